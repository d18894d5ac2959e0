-- Every graded solution whose steps all have a gold label (arith), in step order, for the oracle
-- PRM (prmf train --target gold): the ceiling of what the base model learns from perfect step
-- labels. It needs no rollouts, so no labelling is required. A grading timeout or error is no label.
SELECT p.problem_id, p.dataset, p.split, p.question, s.solution_id, s.correct AS solution_correct, st.step_index,
       st.text, st.gold
FROM solutions s
JOIN problems p ON p.problem_id = s.problem_id
JOIN steps st ON st.solution_id = s.solution_id
WHERE s.grade_status NOT IN ('timeout', 'error')
QUALIFY count(st.gold) OVER (PARTITION BY s.solution_id) = s.num_steps
ORDER BY s.solution_id, st.step_index;
