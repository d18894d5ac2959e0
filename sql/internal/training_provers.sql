-- The provers step_advantages offers in this store (Best-of-K for any K), for an unknown-prover error.
SELECT DISTINCT CASE WHEN prover_kind = 'best_of_k' THEN 'bo<K>' ELSE prover END AS prover
FROM step_advantages()
ORDER BY prover;
