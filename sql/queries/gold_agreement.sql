-- Agreement of the automatic labels with gold step labels (where a dataset has them, e.g. arith).
-- HE predicts gold directly; SE is thresholded at 0.5. Final steps (n = 1, the solution's own
-- correctness) are reported separately because they agree by construction when grading is right.
SELECT p.dataset,
       e.from_final_answer,
       count(*)                                                     AS steps,
       round(avg((e.he = e.gold)::INTEGER), 3)                       AS he_agreement,
       round(avg(((e.se >= 0.5) = e.gold)::INTEGER), 3)              AS se_agreement,
       round(avg(e.gold::INTEGER), 3)                                AS gold_positive_rate,
       round(sum((e.he AND NOT e.gold)::INTEGER) / nullif(sum((NOT e.gold)::INTEGER), 0), 3) AS he_false_positive_rate,
       round(sum((NOT e.he AND e.gold)::INTEGER) / nullif(sum(e.gold::INTEGER), 0), 3)       AS he_false_negative_rate
FROM step_estimates e
JOIN problems p USING (problem_id)
WHERE e.gold IS NOT NULL
GROUP BY ALL
ORDER BY p.dataset, e.from_final_answer;
