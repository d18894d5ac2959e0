-- Problems whose estimates must be computed live: some run that wrote their solutions, units or
-- inferred labels is not in settled_runs (it is still running, or no settle has run since it
-- ended). Every other problem's rows in the settled_* tables are exactly what the *_live views
-- compute (migration 015, Store.settle()). The views below read settled rows for settled problems
-- and live rows for these.
CREATE OR REPLACE VIEW unsettled_problems AS
SELECT DISTINCT problem_id FROM work_units
WHERE run_id NOT IN (SELECT run_id FROM settled_runs)
UNION
SELECT problem_id FROM solutions
WHERE run_id NOT IN (SELECT run_id FROM settled_runs)
UNION
SELECT s.problem_id FROM step_labels l JOIN solutions s USING (solution_id)
WHERE l.run_id NOT IN (SELECT run_id FROM settled_runs);
