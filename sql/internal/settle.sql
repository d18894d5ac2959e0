-- Store.settle(): the settling problems' ($problems) rows, computed from their units by
-- step_estimates_of and the like, replace their settled rows, and the settling runs ($runs) become
-- settled. One transaction, after the settle_clock tick (sql/internal/tick_settle_clock.sql).
DELETE FROM settled_step_estimates WHERE problem_id IN (SELECT unnest($problems::VARCHAR[]));
INSERT INTO settled_step_estimates BY NAME
SELECT * FROM step_estimates_of($problems::VARCHAR[]);
DELETE FROM settled_labelled_estimates WHERE problem_id IN (SELECT unnest($problems::VARCHAR[]));
INSERT INTO settled_labelled_estimates BY NAME
SELECT * FROM labelled_estimates_of($problems::VARCHAR[]);
DELETE FROM settled_step_values WHERE problem_id IN (SELECT unnest($problems::VARCHAR[]));
INSERT INTO settled_step_values BY NAME
SELECT * FROM step_values_of($problems::VARCHAR[]);
INSERT INTO settled_runs (run_id) SELECT unnest($runs::VARCHAR[]);
