-- Problems whose candidates a pool already holds.
SELECT DISTINCT problem_id FROM eval_candidates WHERE pool_id = $pool_id;
