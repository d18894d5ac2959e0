-- Imported step labels for reward-model training (prmf train --labels imported|both), in the
-- columns of labelled_steps (training_steps.sql): every step of every solution that has imported
-- labels, in order. A step the source left unlabelled (ProcessBench after the first error) has a
-- NULL he and se (no loss). Where one solution holds labels of several imports: he only if every
-- import says so, se their mean; se falls back to he where the source gives no soft value.
WITH lab AS (
    SELECT solution_id, step_index, bool_and(he) AS he, avg(coalesce(se, he::DOUBLE)) AS se
    FROM imported_step_labels
    GROUP BY ALL
)
SELECT p.problem_id, p.dataset, p.split, p.question, p.answer_kind,
       s.solution_id, s.correct AS solution_correct, st.step_index, st.text, l.he, l.se,
       false AS inferred, true AS imported
FROM solutions s
JOIN problems p ON p.problem_id = s.problem_id
JOIN steps st ON st.solution_id = s.solution_id
LEFT JOIN lab l ON l.solution_id = st.solution_id AND l.step_index = st.step_index
WHERE s.solution_id IN (SELECT solution_id FROM lab)
ORDER BY s.solution_id, st.step_index;
