-- How many candidates a pool holds.
SELECT count(*) FROM eval_candidates WHERE pool_id = $pool_id;
