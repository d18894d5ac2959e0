-- Which runs wrote each problem's estimates: its solutions (with their steps), units and inferred
-- labels. unsettled_problems, and Store.settle() (sql/internal/settle_runs.sql, settle_problems.sql)
-- read it, so the tables an estimate depends on are listed once. A row per written row (UNION ALL:
-- its readers filter on run_id first, which reaches each table's scan, then take distinct values).
CREATE OR REPLACE VIEW problem_writers AS
SELECT problem_id, run_id FROM work_units
UNION ALL
SELECT problem_id, run_id FROM solutions
UNION ALL
SELECT s.problem_id, l.run_id FROM step_labels l JOIN solutions s USING (solution_id);

-- Problems whose estimates must be computed live: some run that wrote them is not in
-- settled_runs (it is still running, or no settle has run since it ended). Every other problem's
-- rows in the settled_* tables are exactly what step_estimates_of and the like compute (migration
-- 015, Store.settle()). The views below read settled rows for settled problems and live rows for
-- these.
CREATE OR REPLACE VIEW unsettled_problems AS
SELECT DISTINCT problem_id FROM problem_writers
WHERE run_id NOT IN (SELECT run_id FROM settled_runs);
