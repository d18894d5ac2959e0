-- The factory configuration a growth-triggered retrain uses: that of the factory run that started
-- label run $run_id, else that of the newest factory run on this store.
SELECT f.run_id, f.config
FROM runs f
WHERE f.flow_name = 'factory'
ORDER BY f.run_id = (SELECT parent_run_id FROM runs WHERE run_id = $run_id) DESC NULLS LAST, f.started_at DESC
LIMIT 1;
