-- Every trained reward model: what it saw, its validation loss, and its best-of-N accuracy at the largest N per pool.
WITH best AS (
    SELECT r.model_id, r.dataset, arg_max(r.accuracy, r.n) AS accuracy, max(r.n) AS n
    FROM eval_results r
    WHERE r.method IN ('prm_best_of_n', 'orm_best_of_n') AND coalesce(r.aggregation, 'min') = 'min'
      AND r.created_at = (SELECT max(created_at) FROM eval_results x
                          WHERE x.model_id = r.model_id AND x.pool_id = r.pool_id)
    GROUP BY r.model_id, r.dataset
)
SELECT m.model_id, m.kind, m.target, m.promoted,
       m.data_snapshot ->> 'labelled_steps' AS labelled_steps,
       round((m.val_metrics ->> 'val_loss')::DOUBLE, 4) AS val_loss,
       (SELECT string_agg(b.dataset || ' ' || round(b.accuracy, 3) || ' @N=' || b.n, ', ' ORDER BY b.dataset)
        FROM best b WHERE b.model_id = m.model_id) AS best_of_n_accuracy,
       m.created_at
FROM prm_models m
ORDER BY m.created_at DESC;
