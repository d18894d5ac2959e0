-- Non-final solution steps with a gold label, a measured value and an advantage, per base
-- evaluation and prover: Best-of-2, -4 and -8 of the base policy and every separate prover (the
-- final step's value is the outcome, which agrees with gold by construction).
SELECT problem_id, base_completer || '@' || left(md5(base_params), 8) || '/N' || base_budget AS base, prover, gold, q_pi, a_mu, reward
FROM step_advantages(alpha := $alpha, k := 2)
WHERE gold IS NOT NULL AND q_source = 'rollouts' AND a_mu IS NOT NULL
UNION ALL
SELECT problem_id, base_completer || '@' || left(md5(base_params), 8) || '/N' || base_budget AS base, prover, gold, q_pi, a_mu, reward
FROM step_advantages(alpha := $alpha, k := 4)
WHERE gold IS NOT NULL AND q_source = 'rollouts' AND a_mu IS NOT NULL AND prover_kind = 'best_of_k'
UNION ALL
SELECT problem_id, base_completer || '@' || left(md5(base_params), 8) || '/N' || base_budget AS base, prover, gold, q_pi, a_mu, reward
FROM step_advantages(alpha := $alpha, k := 8)
WHERE gold IS NOT NULL AND q_source = 'rollouts' AND a_mu IS NOT NULL AND prover_kind = 'best_of_k'
ORDER BY ALL;
