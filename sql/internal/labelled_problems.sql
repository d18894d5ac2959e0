-- Which `candidates` (problem_id, generation_id) are fully labelled under one label configuration:
-- the generator request is stored, and every solution of the problem by $generator finished its
-- labelling under $label_key (labelled_solutions), and so did every solution that labelling made
-- from rollouts (+reuse: reused_rollouts; stored with the marker of the solution they came from,
-- so a finished generator solution's reused rollouts are always there). For the naive strategy, a
-- solution labelled before strategies existed counts too when every non-final step prefix has its
-- full-budget unit.
SELECT c.problem_id
FROM candidates c
JOIN generations g ON g.generation_id = c.generation_id
WHERE NOT EXISTS (
    SELECT 1
    FROM solutions s
    WHERE s.problem_id = c.problem_id
      AND (s.generator_model = $generator
           OR s.solution_id IN (SELECT solution_id FROM reused_rollouts WHERE label_key = $label_key))
      AND NOT EXISTS (SELECT 1 FROM labelled_solutions l WHERE l.solution_id = s.solution_id AND l.label_key = $label_key)
      AND ($strategy <> 'naive' OR EXISTS (
          SELECT 1
          FROM steps st
          WHERE st.solution_id = s.solution_id AND st.step_index < s.num_steps
            AND NOT EXISTS (
                SELECT 1 FROM work_units u
                WHERE u.problem_id = s.problem_id AND u.prefix_hash = st.prefix_hash AND u.completer_model = $completer
                  AND u.params = $params AND u.strategy = 'math_shepherd' AND u.budget = $budget AND u.round = 0
            )
      ))
);
