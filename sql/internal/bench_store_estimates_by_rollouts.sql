-- prmf bench store's baseline (tasks/bench_store.py): step_estimates as it was before migration 014,
-- counting every unit's rollouts on every query instead of summing the units' stored (n, k), and
-- labelled_steps computed from it (as before migration 015, which stores settled estimates). TEMP
-- views: they shadow the store's on the bench's connection only, and nothing in the store changes.
CREATE OR REPLACE TEMP VIEW step_estimates AS
WITH prefix_counts AS NOT MATERIALIZED (
    SELECT u.problem_id, u.prefix_hash, u.completer_model, u.params, u.strategy, u.budget,
           arg_min(u.unit_id, u.round) AS unit_id,
           count(*) AS n,
           count(*) FILTER (WHERE r.correct) AS k
    FROM work_units u
    JOIN rollouts r USING (unit_id)
    WHERE u.step_index > 0  -- root units (the bare question) belong to no step
    GROUP BY u.problem_id, u.prefix_hash, u.completer_model, u.params, u.strategy, u.budget
), measured AS NOT MATERIALIZED (
    SELECT st.solution_id, st.step_index, s.problem_id,
           pc.completer_model, pc.strategy, pc.unit_id,
           pc.n, pc.k,
           pc.k > 0 AS he,
           pc.k / pc.n AS se,
           st.gold,
           false AS from_final_answer,
           'measured' AS source,
           NULL::INTEGER AS implied_by_step,
           NULL::VARCHAR AS implied_by_unit,
           pc.k > 0 AND pc.n < pc.budget AS early_stopped
    FROM steps st
    JOIN solutions s USING (solution_id)
    JOIN prefix_counts pc ON pc.problem_id = s.problem_id AND pc.prefix_hash = st.prefix_hash
    WHERE st.step_index < s.num_steps
)
SELECT * FROM measured
UNION ALL
SELECT l.solution_id, l.step_index, s.problem_id,
       l.completer_model, l.strategy, NULL AS unit_id,
       0 AS n, 0 AS k,
       l.he,
       NULL::DOUBLE AS se,
       st.gold,
       false AS from_final_answer,
       'inferred' AS source,
       l.implied_by_step,
       l.implied_by_unit,
       false AS early_stopped
FROM step_labels l
JOIN solutions s USING (solution_id)
JOIN steps st ON st.solution_id = l.solution_id AND st.step_index = l.step_index
WHERE NOT (st.step_index < s.num_steps AND EXISTS (  -- the step has a measured row (above) for this completer
    -- (units and rollouts, not prefix_counts: no aggregate, so the outer problem filter can apply first)
    SELECT 1 FROM work_units u JOIN rollouts r USING (unit_id)
    WHERE u.step_index > 0 AND u.problem_id = s.problem_id AND u.prefix_hash = st.prefix_hash
      AND u.completer_model = l.completer_model
))
UNION ALL
SELECT st.solution_id, st.step_index, s.problem_id,
       NULL AS completer_model, 'final_answer' AS strategy, NULL AS unit_id,
       1 AS n, s.correct::INTEGER AS k,
       s.correct AS he,
       s.correct::DOUBLE AS se,
       st.gold,
       true AS from_final_answer,
       'final' AS source,
       NULL::INTEGER AS implied_by_step,
       NULL::VARCHAR AS implied_by_unit,
       false AS early_stopped
FROM steps st
JOIN solutions s USING (solution_id)
WHERE st.step_index = s.num_steps;

CREATE OR REPLACE TEMP VIEW labelled_steps AS
WITH est AS (
    SELECT solution_id, step_index,
           CASE WHEN sum(n) > 0 THEN sum(k) > 0 ELSE bool_or(he) END AS he,
           sum(k)::DOUBLE / nullif(sum(n), 0) AS se,
           bool_and(source = 'inferred') AS inferred
    FROM step_estimates
    GROUP BY ALL
), complete AS (
    SELECT s.solution_id
    FROM solutions s JOIN est e USING (solution_id)
    WHERE s.generator_model NOT LIKE 'import:%'
    GROUP BY s.solution_id, s.num_steps
    HAVING count(*) = s.num_steps
)
SELECT p.problem_id, p.dataset, p.split, p.question, p.answer_kind,
       s.solution_id, s.correct AS solution_correct, st.step_index, st.text, e.he, e.se, e.inferred
FROM complete c
JOIN solutions s USING (solution_id)
JOIN problems p ON p.problem_id = s.problem_id
JOIN steps st ON st.solution_id = s.solution_id
JOIN est e ON e.solution_id = st.solution_id AND e.step_index = st.step_index;
