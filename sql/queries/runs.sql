-- Recent flow runs of every kind (label, train, evaluate, retrain, factory, processbench) with lineage and throughput.
SELECT run_id, flow_name, flow_run_name, parent_run_id, dataset, status, completer_model, backend,
       started_at, finished_at, tokens_generated,
       round(tokens_generated / nullif(epoch(finished_at - started_at), 0), 1) AS tokens_per_s, code_version
FROM runs
ORDER BY started_at DESC
LIMIT 20;
