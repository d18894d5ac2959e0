-- Forget a study stage's stale record (its model or run is gone) before recording it again.
DELETE FROM study_stages WHERE stage_key = $stage_key;
