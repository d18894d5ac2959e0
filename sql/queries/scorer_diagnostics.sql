-- Scorer diagnostics of the latest evaluation of each pool: AUC of each reward model's solution score against correctness (0.5 = chance) and its rank correlation with the number of steps and tokens.
WITH latest AS (
    SELECT pool_id, arg_max(run_id, created_at) AS run_id FROM eval_diagnostics GROUP BY pool_id
)
SELECT d.dataset, d.split, d.model_id, coalesce(d.aggregation, 'outcome') AS score, d.candidates, d.correct,
       d.truncated, round(d.auc, 3) AS auc, round(d.spearman_steps, 3) AS spearman_steps,
       round(d.spearman_tokens, 3) AS spearman_tokens, d.run_id
FROM eval_diagnostics d JOIN latest l USING (pool_id, run_id)
ORDER BY d.split DESC, d.dataset, d.model_id, score;
