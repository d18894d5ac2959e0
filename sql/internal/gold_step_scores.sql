-- Step scores that reward models gave the candidates of the arith evaluation pools of $split, with
-- what the gold step labels need (the problem's stored arith meta), for tasks/verifiers/gold_check.py.
-- Step-scoring models only (PRMs and implicit PRMs); $model_ids empty: every such model.
SELECT sc.model_id, m.kind, c.pool_id, c.problem_id, c.candidate_index, c.steps, c.correct, sc.step_scores,
       p.question, p.gold_answer, p.meta
FROM eval_scores sc
JOIN eval_candidates c USING (pool_id, problem_id, candidate_index)
JOIN eval_pools ep USING (pool_id)
JOIN problems p ON p.problem_id = c.problem_id
JOIN prm_models m ON m.model_id = sc.model_id
WHERE ep.dataset = 'arith' AND ep.split = $split AND m.kind IN ('prm', 'implicit')
  AND (len($model_ids::VARCHAR[]) = 0 OR sc.model_id IN (SELECT unnest($model_ids::VARCHAR[])))
ORDER BY m.created_at, sc.model_id, c.pool_id, c.problem_id, c.candidate_index;
