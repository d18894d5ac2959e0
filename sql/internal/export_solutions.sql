-- prmf export (tasks/interchange/export.py): one row per exported solution, its steps and their
-- labels in step order, for the problems of one chunk: the registered table export_chunk (from
-- export_problems.sql), whose ids all lie in [$first_problem, $last_problem]. The range is what
-- DuckDB pushes into step_estimates' rollout scan, so its working set is one chunk's, not the
-- store's. Ordered by problem, so a streamed reader sees each problem's solutions together. A
-- solution is exported only when every step has a label of the kind asked for ($label: he | se |
-- pav | gold).
-- Estimates are pooled as in labelled_steps (sum of k over sum of n across evaluations),
-- restricted to $completer when given; the final step's label is the solution's own correctness.
-- Parameters:
--   $strategy, $completer  NULL: any; else only solutions labelled by it (labelled_solutions)
--   $measured_only       drop solutions with an inferred step label
--   $min_rollouts        drop solutions with a measured step from fewer rollouts
--   $se_threshold, $pav_k, $pav_alpha  the se and pav label kinds' settings
WITH chosen AS (
    SELECT s.solution_id, s.problem_id, s.generator_model, s.correct, s.num_steps, s.run_id
    FROM solutions s
    JOIN export_chunk USING (problem_id)
    WHERE s.problem_id BETWEEN $first_problem AND $last_problem
      AND (($strategy::VARCHAR IS NULL AND $completer::VARCHAR IS NULL) OR EXISTS (
          SELECT 1 FROM labelled_solutions l
          WHERE l.solution_id = s.solution_id
            AND ($strategy::VARCHAR IS NULL OR l.strategy = $strategy)
            AND ($completer::VARCHAR IS NULL OR l.completer_model = $completer)))
), est AS (
    SELECT e.solution_id, e.step_index,
           CASE WHEN sum(e.n) > 0 THEN sum(e.k) > 0 ELSE bool_or(e.he) END AS he,
           sum(e.k)::DOUBLE / nullif(sum(e.n), 0) AS se,
           bool_and(e.source = 'inferred') AS inferred,
           sum(e.n) FILTER (WHERE e.source = 'measured') AS rollouts
    FROM step_estimates e
    WHERE e.problem_id BETWEEN $first_problem AND $last_problem
      AND e.solution_id IN (SELECT solution_id FROM chosen)
      AND ($completer::VARCHAR IS NULL OR e.completer_model IS NULL OR e.completer_model = $completer)
    GROUP BY ALL
), adv AS (  -- the first base evaluation's advantage under the Best-of-K prover (label pav only)
    SELECT solution_id, step_index,
           arg_min(a_mu, base_completer || base_params::VARCHAR || base_budget::VARCHAR) AS a_mu
    FROM step_advantages(alpha := $pav_alpha, k := $pav_k)
    WHERE $label = 'pav' AND prover = 'bo' || $pav_k::VARCHAR
      AND solution_id IN (SELECT solution_id FROM chosen)
    GROUP BY ALL
), labelled AS (
    SELECT st.solution_id, st.step_index, st.text, e.inferred, e.rollouts,
           CASE $label WHEN 'he' THEN e.he WHEN 'se' THEN e.se >= $se_threshold
                       WHEN 'pav' THEN a.a_mu >= 0 ELSE st.gold END AS hard,
           CASE $label WHEN 'pav' THEN a.a_mu WHEN 'gold' THEN NULL ELSE e.se END AS soft
    FROM steps st
    JOIN chosen c USING (solution_id)
    LEFT JOIN est e USING (solution_id, step_index)
    LEFT JOIN adv a USING (solution_id, step_index)
)
SELECT c.solution_id, p.problem_id, p.dataset, p.split, p.question, p.gold_answer, c.generator_model,
       c.correct, c.run_id,
       list(l.text ORDER BY l.step_index) AS steps,
       list(l.hard ORDER BY l.step_index) AS labels,
       list(l.soft ORDER BY l.step_index) AS soft_labels,
       coalesce(bool_or(l.inferred), false) AS any_inferred
FROM chosen c
JOIN problems p USING (problem_id)
JOIN labelled l USING (solution_id)
GROUP BY c.solution_id, p.problem_id, p.dataset, p.split, p.question, p.gold_answer, c.generator_model,
         c.correct, c.run_id, c.num_steps, p.source_row
HAVING count(l.hard) = c.num_steps
   AND (NOT $measured_only OR NOT coalesce(bool_or(l.inferred), false))
   AND coalesce(min(l.rollouts), $min_rollouts) >= $min_rollouts
ORDER BY p.problem_id, c.solution_id;
