-- PAV training targets (prmf train --target pav): one prover's effective reward
-- Q_pi + alpha * A_mu per solution step, for every base evaluation (see views/30_step_advantages.sql).
-- $k is the Best-of-K prover's K (any value for a completer prover); reward is NULL where the
-- prefix or its predecessor has no value. The caller keeps the solutions training_steps gives and
-- picks the base evaluation.
SELECT solution_id, step_index, base_completer, base_params, base_budget, reward
FROM step_advantages(alpha := $alpha, k := $k)
WHERE prover = $prover
ORDER BY base_completer, base_params, base_budget, solution_id, step_index;
