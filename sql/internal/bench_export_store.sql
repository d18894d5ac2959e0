-- prmf bench export: a synthetic labelled store (tasks/bench_export.py). Variables (SET VARIABLE):
-- bench_problems, bench_solutions (per problem), bench_steps (per solution), bench_rollouts (per
-- prefix). Every non-final step prefix is rolled out, and so is each problem's bare question (the
-- root, which process advantages start from); rollout r of a unit is correct when hash(unit, r)
-- is even, so each unit's count of correct rollouts varies from 0 to n. Steps carry gold labels
-- (two in three correct), so the queries that compare with gold do their full work. One INSERT
-- per table.
INSERT INTO problems BY NAME
SELECT 'bp' || i AS problem_id, 'bench' AS dataset, 'train' AS split, 'bench' AS source, i + 1 AS source_row,
       'Bench question ' || i || ': what is ' || i || ' plus ' || (i % 7) || '?' AS question,
       (i + i % 7)::VARCHAR AS gold_answer, 'numeric' AS answer_kind, '{}' AS meta
FROM range(getvariable('bench_problems')) t(i);

INSERT INTO generations BY NAME
SELECT 'bg' || i AS generation_id, 'bp' || i AS problem_id, 'bench-generator' AS generator_model, '{}' AS params,
       getvariable('bench_solutions') AS n, 100 AS num_tokens, 'bench' AS run_id
FROM range(getvariable('bench_problems')) t(i);

INSERT INTO solutions BY NAME
SELECT 'bs' || i || '.' || j AS solution_id, 'bp' || i AS problem_id, 'bg' || i AS generation_id,
       'bench-generator' AS generator_model, 'solution text ' || i || '.' || j AS text, NULL AS final_answer,
       (i + j) % 2 = 0 AS correct, 'ok' AS grade_status, 50 AS num_tokens, getvariable('bench_steps') AS num_steps,
       'bench' AS run_id
FROM range(getvariable('bench_problems')) t(i), range(getvariable('bench_solutions')) u(j);

INSERT INTO steps BY NAME
SELECT s.solution_id, k AS step_index,
       'Step ' || k || ' of solution ' || s.solution_id || ': ' || repeat('x + 1 = y; ', 4) AS text,
       s.solution_id || ':' || k AS prefix_hash, hash(s.solution_id, k) % 3 <> 0 AS gold
FROM solutions s, range(1, getvariable('bench_steps') + 1) t(k)
WHERE s.generator_model = 'bench-generator';

INSERT INTO work_units BY NAME
SELECT 'bu' || st.solution_id || ':' || st.step_index AS unit_id, s.problem_id, st.prefix_hash,
       'bench-completer' AS completer_model, '{}' AS params, 'math_shepherd' AS strategy,
       getvariable('bench_rollouts') AS budget, st.solution_id, st.step_index, 'bench' AS run_id, 0 AS round,
       getvariable('bench_rollouts') AS n,
       -- k: the correct rollouts the next statement writes (hash(unit, r) % 2 = 0 for r < n)
       (SELECT count(*) FROM range(getvariable('bench_rollouts')) t(r)
        WHERE hash('bu' || st.solution_id || ':' || st.step_index, r) % 2 = 0) AS k
FROM steps st JOIN solutions s USING (solution_id)
WHERE s.generator_model = 'bench-generator' AND st.step_index < s.num_steps
UNION ALL
SELECT 'bu' || p.problem_id || ':root', p.problem_id, 'root', 'bench-completer', '{}', 'math_shepherd',
       getvariable('bench_rollouts'), replace(p.problem_id, 'bp', 'bs') || '.0', 0, 'bench', 0,
       getvariable('bench_rollouts'),
       (SELECT count(*) FROM range(getvariable('bench_rollouts')) t(r)
        WHERE hash('bu' || p.problem_id || ':root', r) % 2 = 0)
FROM problems p
WHERE p.dataset = 'bench';

INSERT INTO rollouts BY NAME
SELECT u.unit_id || ':' || r AS rollout_id, u.unit_id, r AS sample_index, u.solution_id, u.step_index,
       'rollout' AS text, NULL AS answer, hash(u.unit_id, r) % 2 = 0 AS correct, 'ok' AS grade_status,
       20 AS num_tokens, 'bench' AS run_id
FROM work_units u, range(getvariable('bench_rollouts')) t(r)
WHERE u.completer_model = 'bench-completer';
