-- Which `candidates` (problem_id, generation_id) are fully labelled under one label configuration:
-- the generator request is stored, and every non-final step prefix of the problem's solutions by
-- $generator has its work unit for this completer, rollout sampling, strategy and budget.
SELECT c.problem_id
FROM candidates c
JOIN generations g ON g.generation_id = c.generation_id
WHERE NOT EXISTS (
    SELECT 1
    FROM solutions s
    JOIN steps st USING (solution_id)
    WHERE s.problem_id = c.problem_id AND s.generator_model = $generator AND st.step_index < s.num_steps
      AND NOT EXISTS (
          SELECT 1 FROM work_units u
          WHERE u.problem_id = s.problem_id AND u.prefix_hash = st.prefix_hash AND u.completer_model = $completer
            AND u.params = $params AND u.strategy = $strategy AND u.budget = $budget
      )
);
