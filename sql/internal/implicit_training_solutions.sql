-- Every graded solution with all its steps, in order, for implicit-PRM training: it needs the
-- solution's correctness only, no step labels. A grading timeout or error is no label. `imported`:
-- a solution of `prmf import` (TrainConfig.labels decides whether it is used).
SELECT p.problem_id, p.dataset, p.split, p.question, s.solution_id, s.correct, st.step_index, st.text,
       s.generator_model LIKE 'import:%' AS imported
FROM solutions s
JOIN problems p ON p.problem_id = s.problem_id
JOIN steps st ON st.solution_id = s.solution_id
WHERE s.grade_status NOT IN ('timeout', 'error')
QUALIFY count(*) OVER (PARTITION BY s.solution_id) = s.num_steps
ORDER BY s.solution_id, st.step_index;
