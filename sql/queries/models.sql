-- Every trained reward model: what it saw and cost (generated + training tokens; NULL before migration 011), its validation loss, its best-of-N accuracy at the largest N per pool, and its promotion decision.
WITH best AS (
    SELECT r.model_id, r.dataset || '/' || p.split AS pool, arg_max(r.accuracy, r.n) AS accuracy, max(r.n) AS n
    FROM eval_results r JOIN eval_pools p USING (pool_id)
    WHERE r.method IN ('prm_best_of_n', 'orm_best_of_n') AND coalesce(r.aggregation, 'min') = 'min'
      AND r.created_at = (SELECT max(created_at) FROM eval_results x
                          WHERE x.model_id = r.model_id AND x.pool_id = r.pool_id)
    GROUP BY r.model_id, r.dataset, p.split
)
SELECT m.model_id, m.kind, m.target, m.promoted,
       m.data_snapshot ->> 'labelled_steps' AS labelled_steps,
       m.solution_tokens + m.rollout_tokens AS generated_tokens, m.training_tokens,
       round((m.val_metrics ->> 'val_loss')::DOUBLE, 4) AS val_loss,
       (SELECT string_agg(b.pool || ' ' || round(b.accuracy, 3) || ' @N=' || b.n, ', ' ORDER BY b.pool)
        FROM best b WHERE b.model_id = m.model_id) AS best_of_n_accuracy,
       (SELECT arg_max(d.reason, d.created_at) FROM promotion_decisions d WHERE d.candidate = m.model_id) AS decision,
       m.created_at
FROM prm_models m
ORDER BY m.created_at DESC;
