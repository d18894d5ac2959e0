-- Every growth trigger, newest first: the label run that crossed the retrain threshold, the growth
-- then, and the first PRM trained after it (the model that retrain produced, once it ran).
SELECT t.created_at, t.dataset, r.flow_run_name AS label_run, t.run_id,
       coalesce(t.baseline_model, '(none promoted)') AS baseline_model,
       t.labelled_steps, t.new_steps, t.threshold,
       (SELECT min_by(m.model_id, m.created_at) FROM prm_models m
        WHERE m.kind = 'prm' AND m.created_at >= t.created_at) AS next_prm
FROM retrain_triggers t
LEFT JOIN runs r USING (run_id)
ORDER BY t.created_at DESC;
