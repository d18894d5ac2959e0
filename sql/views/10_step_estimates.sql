-- Estimates per solution step (step_estimates, at the end), from three sources (column `source`):
--   measured: rollouts from that prefix; all rounds of one evaluation (completer, sampling,
--             strategy, budget) are pooled, so n is the rollouts actually spent. early_stopped
--             marks an SE over fewer than the budget because a rollout was correct (HE is final).
--   inferred: no rollouts from that prefix; a labelling strategy inferred HE from another prefix's
--             measurement under the monotone assumption (step_labels): n = 0, se NULL, and
--             implied_by_step / implied_by_unit name the measurement. An inferred label never
--             overrides a measured one: a step measured under the same completer has no inferred row.
--   final:    the final step's estimate is the solution's own correctness (n = 1), also marked by
--             from_final_answer and a NULL completer_model.
-- Solutions sharing a prefix share its rollouts. unit_id is the prefix's first-round unit.
-- step_estimates_of(problem_ids) computes them for those problems from the units; settled problems
-- (migration 015, see unsettled_problems) keep them in settled_step_estimates. Every table is
-- read for the given problems only, so that no work is done for a problem a query reads settled.
-- The CTEs are NOT MATERIALIZED so that a filter on problem_id (prmf export reads a range of
-- problems at a time) reaches the units scan instead of every unit being aggregated first.
CREATE OR REPLACE MACRO step_estimates_of(problem_ids) AS TABLE
WITH scope AS (
    SELECT unnest(problem_ids) AS problem_id
), units AS NOT MATERIALIZED (
    SELECT * FROM work_units WHERE problem_id IN (SELECT problem_id FROM scope)
), sols AS NOT MATERIALIZED (
    SELECT solution_id, problem_id, num_steps, correct FROM solutions
    WHERE problem_id IN (SELECT problem_id FROM scope)
), prefix_counts AS NOT MATERIALIZED (  -- each unit's n and k are stored with its rollouts
    SELECT u.problem_id, u.prefix_hash, u.completer_model, u.params, u.strategy, u.budget,
           arg_min(u.unit_id, u.round) AS unit_id,
           sum(u.n)::BIGINT AS n,
           sum(u.k)::BIGINT AS k
    FROM units u
    WHERE u.step_index > 0  -- root units (the bare question) belong to no step
    GROUP BY u.problem_id, u.prefix_hash, u.completer_model, u.params, u.strategy, u.budget
), prefixes AS MATERIALIZED (  -- (materialized: joined to the counts after, not before, the steps)
    SELECT st.solution_id, st.step_index, st.prefix_hash, st.gold, s.problem_id
    FROM steps st
    JOIN sols s USING (solution_id)
    WHERE st.step_index < s.num_steps
), measured AS NOT MATERIALIZED (
    SELECT st.solution_id, st.step_index, st.problem_id,
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
    FROM prefixes st
    JOIN prefix_counts pc ON pc.problem_id = st.problem_id AND pc.prefix_hash = st.prefix_hash
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
JOIN sols s USING (solution_id)
JOIN steps st ON st.solution_id = l.solution_id AND st.step_index = l.step_index
WHERE NOT (st.step_index < s.num_steps AND EXISTS (  -- the step has a measured row (above) for this completer
    -- (units, not prefix_counts: no aggregate, so the outer problem filter can apply first)
    SELECT 1 FROM units u
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
JOIN sols s USING (solution_id)
WHERE st.step_index = s.num_steps;

-- Every problem's estimates computed from its units, settled or not (what settle() stores and
-- `prmf doctor` checks the settled rows against, both through step_estimates_of).
CREATE OR REPLACE VIEW step_estimates_live AS
SELECT * FROM step_estimates_of((SELECT list(problem_id) FROM problems));

-- What queries read: a settled problem's stored rows, an unsettled one's computed from its units.
CREATE OR REPLACE VIEW step_estimates AS
SELECT * FROM settled_step_estimates
WHERE problem_id NOT IN (SELECT problem_id FROM unsettled_problems)
UNION ALL
SELECT * FROM step_estimates_of((SELECT list(problem_id) FROM unsettled_problems));
