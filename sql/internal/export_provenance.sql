-- The dataset card's provenance of an export ($export_ids: the exported solutions): how they were
-- generated (generator, sampling), rolled out (completer, sampling, evaluator, budget: the work
-- units of their step prefixes) and labelled (labelling strategy, labelled_solutions), with the
-- runs that did each and how many exported solutions each touched.
SELECT 'generation' AS kind, NULL AS strategy, g.generator_model AS model, g.params::VARCHAR AS params,
       NULL::INTEGER AS budget, list(DISTINCT s.run_id ORDER BY s.run_id) AS run_ids,
       count(DISTINCT s.solution_id) AS solutions
FROM export_ids x
JOIN solutions s ON s.solution_id = x.solution_id
JOIN generations g USING (generation_id)
GROUP BY ALL
UNION ALL
SELECT 'rollouts', u.strategy, u.completer_model, u.params::VARCHAR, u.budget,
       list(DISTINCT u.run_id ORDER BY u.run_id), count(DISTINCT s.solution_id)
FROM export_ids x
JOIN solutions s ON s.solution_id = x.solution_id
JOIN steps st ON st.solution_id = s.solution_id
JOIN work_units u ON u.problem_id = s.problem_id AND u.prefix_hash = st.prefix_hash
GROUP BY ALL
UNION ALL
SELECT 'labelling', l.strategy, l.completer_model, l.params::VARCHAR, l.budget,
       list(DISTINCT l.run_id ORDER BY l.run_id), count(DISTINCT l.solution_id)
FROM export_ids x
JOIN labelled_solutions l ON l.solution_id = x.solution_id
GROUP BY ALL
ORDER BY kind, model, params;
