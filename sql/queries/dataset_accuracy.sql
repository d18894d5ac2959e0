-- Generator accuracy per dataset and split: distinct solutions and the share that is correct.
SELECT p.dataset, p.split, s.generator_model,
       count(DISTINCT p.problem_id)                              AS problems,
       count(*)                                                  AS solutions,
       round(avg(s.correct::INTEGER), 3)                         AS accuracy,
       round(avg((s.grade_status = 'no_answer')::INTEGER), 3)    AS no_answer_rate,
       round(avg(s.num_steps), 2)                                AS mean_steps
FROM solutions s
JOIN problems p USING (problem_id)
GROUP BY ALL
ORDER BY p.dataset, p.split;
