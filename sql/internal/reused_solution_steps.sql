-- Every step of the solutions that one labelling ($label_key) made from rollouts of the given
-- problems (`ids`), in order.
SELECT s.solution_id, s.problem_id, rr.parent_step, s.num_steps, s.correct, coalesce(s.step_format, 'line') AS step_format,
       st.step_index, st.text, st.prefix_hash
FROM reused_rollouts rr
JOIN ids USING (problem_id)
JOIN solutions s USING (solution_id)
JOIN steps st USING (solution_id)
WHERE rr.label_key = $label_key
ORDER BY s.problem_id, s.solution_id, st.step_index;
