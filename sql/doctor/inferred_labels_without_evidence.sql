-- Every inferred label is implied by a stored measurement.
-- HE = 1 needs a correct rollout from a later prefix (or the correct final answer), HE = 0 an
-- earlier prefix whose rollouts were all wrong. (A step measured later, e.g. through a prefix
-- another solution shares, may also have an inferred label: step_estimates shows the measured one.)
-- fix: the step_labels rows were edited or their rollouts deleted; delete the listed labels and
-- their labelled_solutions rows, then rerun `prmf label` to infer them again.
SELECT l.solution_id, l.step_index, l.he, l.implied_by_step, l.implied_by_unit
FROM step_labels l
JOIN solutions s USING (solution_id)
LEFT JOIN step_estimates m
       ON m.solution_id = l.solution_id AND m.step_index = l.implied_by_step AND m.unit_id = l.implied_by_unit
WHERE NOT coalesce(CASE
        WHEN l.implied_by_step = s.num_steps THEN l.he AND s.correct AND l.implied_by_unit IS NULL
        WHEN l.he THEN l.implied_by_step > l.step_index AND m.k > 0
        ELSE l.implied_by_step < l.step_index AND m.n > 0 AND m.k = 0
      END, false)
LIMIT 20;
