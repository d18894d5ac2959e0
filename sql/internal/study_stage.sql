-- A finished study stage's result (tasks/study): the run or model it produced, if it still exists.
SELECT s.result_id
FROM study_stages s
WHERE s.stage_key = $stage_key
  AND (s.stage <> 'train' OR EXISTS (SELECT 1 FROM prm_models m WHERE m.model_id = s.result_id))
  AND (s.stage = 'train' OR EXISTS (SELECT 1 FROM runs r WHERE r.run_id = s.result_id AND r.status = 'completed'));
