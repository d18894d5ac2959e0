-- prmf bench store's `running` variant (tasks/bench_store.py): a run still labelling (status
-- running) has rolled out every prefix of the first $problems problems under a second completer,
-- with the same outcomes as the first (units with their counts, and their rollouts). Those
-- problems are unsettled until the run ends and settles.
INSERT INTO runs (run_id, flow_name, status) VALUES ('bench-running', 'label', 'running');
INSERT INTO work_units BY NAME
SELECT * REPLACE (unit_id || ':second' AS unit_id, 'bench-second-completer' AS completer_model,
                  'bench-running' AS run_id)
FROM work_units
WHERE problem_id IN (SELECT problem_id FROM problems ORDER BY problem_id LIMIT $problems);
INSERT INTO rollouts BY NAME
SELECT r.* REPLACE (r.unit_id || ':second:' || r.sample_index AS rollout_id, r.unit_id || ':second' AS unit_id,
                    'bench-running' AS run_id)
FROM rollouts r
JOIN work_units u USING (unit_id)
WHERE u.run_id <> 'bench-running'
  AND u.problem_id IN (SELECT problem_id FROM problems ORDER BY problem_id LIMIT $problems);
