-- Every step of every solution of the given problems (`ids`) by one generator (?), in order.
SELECT s.solution_id, s.problem_id, s.num_steps, s.correct, coalesce(s.step_format, 'line') AS step_format,
       st.step_index, st.text, st.prefix_hash
FROM solutions s
JOIN ids USING (problem_id)
JOIN steps st USING (solution_id)
WHERE s.generator_model = ?
ORDER BY s.problem_id, s.solution_id, st.step_index;
