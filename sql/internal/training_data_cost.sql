-- Generated tokens behind a verifier's training data ($solution_ids: the solutions it trained and
-- validated on). Solutions: the whole generator requests they came from (every sample of the
-- request, duplicates and ungradable ones included: that is what was paid). Rollouts, when the
-- labels came from them ($with_rollouts): every rollout from a step prefix of those solutions, all
-- evaluations and rounds, each work unit once however many solutions share its prefix; with
-- $with_root also the rollouts from their problems' bare questions (PAV's first-step advantage
-- needs them). A reused rollout (+reuse) that became a training solution was paid as a rollout: it
-- is counted with the rollouts when they are counted, else as a solution of its rollout's tokens.
WITH used AS (
    SELECT s.solution_id, s.problem_id, s.generation_id, s.num_steps, s.num_tokens,
           s.generator_model LIKE 'rollouts:%' AS reused
    FROM solutions s
    WHERE s.solution_id IN (SELECT unnest($solution_ids::VARCHAR[]))
), prefixes AS (
    SELECT DISTINCT u.problem_id, st.prefix_hash
    FROM used u JOIN steps st USING (solution_id)
    WHERE st.step_index < u.num_steps
), units AS (
    SELECT w.unit_id
    FROM work_units w JOIN prefixes p USING (problem_id, prefix_hash)
    WHERE w.step_index > 0
    UNION
    SELECT w.unit_id
    FROM work_units w
    WHERE $with_root AND w.step_index = 0 AND w.problem_id IN (SELECT problem_id FROM used)
)
SELECT
    (SELECT coalesce(sum(g.num_tokens), 0)
     FROM generations g
     WHERE g.generation_id IN (SELECT generation_id FROM used WHERE NOT reused))
    + (SELECT coalesce(sum(num_tokens), 0) FROM used WHERE reused AND NOT $with_rollouts) AS solution_tokens,
    CASE WHEN $with_rollouts
         THEN (SELECT coalesce(sum(r.num_tokens), 0) FROM rollouts r WHERE r.unit_id IN (SELECT unit_id FROM units))
         ELSE 0 END AS rollout_tokens;
