-- How well each step score separates gold-correct from gold-wrong steps (datasets with gold step
-- labels, e.g. arith), per prover: AUC of Q_pi, of A_mu and of the effective reward Q_pi + 0.5 A_mu
-- (Mann-Whitney, ties counted half; from counts per distinct value, not a rank of every step), and
-- how often A_mu is negative on a gold-correct step.
-- Best-of-2, -4 and -8 of the base policy and every separate prover, over non-final steps with
-- rollouts (the final step's value is the outcome, which agrees with gold by construction).
WITH scored AS (
    SELECT prover, gold, q_pi, a_mu, reward FROM step_advantages_for_ks([2, 4, 8])
    WHERE gold IS NOT NULL AND q_source = 'rollouts' AND a_mu IS NOT NULL
), distinct_scores AS (  -- steps with the same scores and gold label, counted once (values repeat a lot)
    SELECT prover, gold, q_pi, a_mu, reward, count(*) AS steps FROM scored GROUP BY ALL
), long AS (
    UNPIVOT distinct_scores ON q_pi, a_mu, reward INTO NAME score VALUE value
), tallies AS (  -- per distinct score value: its gold-correct and gold-wrong steps
    SELECT prover, score, value, coalesce(sum(steps) FILTER (WHERE gold), 0) AS pos,
           coalesce(sum(steps) FILTER (WHERE NOT gold), 0) AS neg
    FROM long
    GROUP BY ALL
), below AS (
    SELECT *, coalesce(sum(neg) OVER (PARTITION BY prover, score ORDER BY value
                                      ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS neg_below
    FROM tallies
), auc AS (  -- each gold-correct step beats the gold-wrong steps scored below it and half of its ties
    SELECT prover, score, sum(pos * (neg_below + neg / 2.0)) / nullif(sum(pos) * sum(neg), 0) AS auc
    FROM below
    GROUP BY ALL
)
SELECT s.prover, s.steps, s.gold_correct_share,
       round(any_value(a.auc) FILTER (WHERE a.score = 'q_pi'), 3)            AS auc_q_pi,
       round(any_value(a.auc) FILTER (WHERE a.score = 'a_mu'), 3)            AS auc_a_mu,
       round(any_value(a.auc) FILTER (WHERE a.score = 'reward'), 3)          AS auc_reward,
       s.negative_a_on_gold_correct
FROM (
    SELECT prover,
           count(*)                                                  AS steps,
           round(avg(gold::INTEGER), 3)                              AS gold_correct_share,
           round(avg((a_mu < 0)::INTEGER) FILTER (WHERE gold), 3)    AS negative_a_on_gold_correct
    FROM scored
    GROUP BY prover
) s
JOIN auc a USING (prover)
GROUP BY ALL
ORDER BY s.prover;
