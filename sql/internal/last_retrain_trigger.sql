-- Labelled steps at the newest retrain trigger for a baseline (the promoted PRM, NULL: none).
SELECT max(labelled_steps) FROM retrain_triggers WHERE baseline_model IS NOT DISTINCT FROM $baseline_model;
