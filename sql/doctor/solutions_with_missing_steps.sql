-- Every solution has exactly num_steps steps, numbered 1..num_steps.
-- fix: delete the listed solutions (and their steps) and rerun `prmf label`; generation redoes them.
SELECT s.solution_id, s.num_steps, count(st.step_index) AS steps, max(st.step_index) AS last_step
FROM solutions s
LEFT JOIN steps st USING (solution_id)
GROUP BY s.solution_id, s.num_steps
HAVING count(st.step_index) <> s.num_steps OR max(st.step_index) <> s.num_steps
LIMIT 20;
