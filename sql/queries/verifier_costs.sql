-- Accuracy against cost: each verifier's best-of-N accuracy (95% CI) at the largest N of its latest evaluation of each test pool, per aggregation (an implicit PRM per read-out), next to the tokens its training data and training took; majority vote at the same N costs no verifier.
WITH latest AS (
    SELECT r.model_id, r.pool_id,
           CASE WHEN m.kind = 'implicit' THEN coalesce(ru.config ->> 'implicit_readout', 'cumulative') END AS readout,
           arg_max(r.run_id, r.created_at) AS run_id
    FROM eval_results r
    JOIN prm_models m USING (model_id)
    LEFT JOIN runs ru ON ru.run_id = r.run_id
    WHERE r.method IN ('prm_best_of_n', 'orm_best_of_n')
    GROUP BY ALL
), top AS (
    SELECT l.*, max(r.n) AS n
    FROM latest l JOIN eval_results r USING (model_id, pool_id, run_id)
    WHERE r.method IN ('prm_best_of_n', 'orm_best_of_n')
    GROUP BY ALL
), verifiers AS (
    SELECT m.model_id, m.kind, m.target, t.readout, r.dataset || '/' || p.split AS pool, r.method, r.aggregation, r.n,
           r.accuracy, r.ci_low, r.ci_high,
           m.solution_tokens, m.rollout_tokens, m.training_tokens
    FROM top t
    JOIN eval_results r USING (model_id, pool_id, run_id, n)
    JOIN prm_models m USING (model_id)
    JOIN eval_pools p USING (pool_id)
    WHERE r.method IN ('prm_best_of_n', 'orm_best_of_n') AND p.split = 'test'
), majority AS (  -- the same runs' majority vote at the same N: the no-verifier baseline
    SELECT DISTINCT NULL AS model_id, 'none' AS kind, NULL AS target, NULL AS readout, r.dataset || '/' || p.split AS pool,
           r.method, NULL AS aggregation, r.n, r.accuracy, r.ci_low, r.ci_high,
           0 AS solution_tokens, 0 AS rollout_tokens, 0 AS training_tokens
    FROM top t
    JOIN eval_results r USING (pool_id, run_id, n)
    JOIN eval_pools p USING (pool_id)
    WHERE r.method = 'majority' AND p.split = 'test'
)
SELECT pool, n, kind, target, readout, method, aggregation, round(accuracy, 3) AS accuracy, round(ci_low, 3) AS ci_low,
       round(ci_high, 3) AS ci_high, solution_tokens, rollout_tokens, training_tokens,
       solution_tokens + rollout_tokens + training_tokens AS total_tokens, model_id
FROM (SELECT * FROM verifiers UNION ALL SELECT * FROM majority)
ORDER BY pool, n, total_tokens NULLS LAST, kind, model_id, readout, aggregation NULLS FIRST;
