-- prmf bench store's baseline (tasks/bench_store.py): the step_advantages macros as they were before
-- they summed the units' stored (n, k), counting every unit's rollouts on every call. TEMP macros:
-- they shadow the store's on the bench's connection only, and nothing in the store changes. They
-- have the store's later changes that are not about counting (an equi-join on the prefix,
-- step_advantages_for_ks), so that they finish at 10M rollouts and run the same saved queries.
CREATE OR REPLACE TEMP MACRO step_advantages_for_ks(ks, alpha := 0.5) AS TABLE
WITH prefix_values AS (
    SELECT u.problem_id, u.prefix_hash, u.step_index = 0 AS root,
           CASE WHEN u.step_index = 0 THEN '' ELSE u.prefix_hash END AS state_key, u.completer_model, u.params, u.budget,
           count(*) AS n, count(*) FILTER (WHERE r.correct) AS c
    FROM work_units u
    JOIN rollouts r USING (unit_id)
    WHERE u.strategy = 'math_shepherd'
    GROUP BY ALL
), evaluations AS (  -- which evaluations rolled out some prefix of each problem
    SELECT DISTINCT problem_id, completer_model, params, budget FROM prefix_values
), states AS (  -- every solution's prefixes 0..S
    SELECT s.solution_id, s.problem_id, s.num_steps, s.correct, st.step_index, st.prefix_hash, st.gold
    FROM solutions s
    JOIN steps st USING (solution_id)
    UNION ALL
    SELECT s.solution_id, s.problem_id, s.num_steps, s.correct, 0, '', NULL  -- '': the root's state_key
    FROM solutions s
), state_values AS (
    SELECT x.solution_id, problem_id, x.step_index, x.gold,
           e.completer_model, e.params, e.budget,
           CASE WHEN x.step_index = x.num_steps THEN 1 ELSE pv.n END AS n,
           CASE WHEN x.step_index = x.num_steps THEN x.correct::INTEGER ELSE pv.c END AS c,
           CASE WHEN x.step_index = x.num_steps THEN 'outcome'
                WHEN pv.n IS NULL THEN 'missing'
                WHEN x.step_index = 0 THEN 'root'
                ELSE 'rollouts' END AS q_source
    FROM states x
    JOIN evaluations e USING (problem_id)
    LEFT JOIN prefix_values pv
           ON pv.problem_id = problem_id AND pv.completer_model = e.completer_model
          AND pv.params = e.params AND pv.budget = e.budget
          AND pv.state_key = x.prefix_hash  -- an equi-join: each state meets its own prefix's values only
), q AS (
    SELECT *, c::DOUBLE / n AS q FROM state_values
), pairs AS (
    SELECT b.solution_id, b.problem_id, b.step_index, b.gold,
           b.completer_model AS base_completer, b.params AS base_params, b.budget AS base_budget,
           'bo' || bo.k AS prover, 'best_of_k' AS prover_kind, bo.k AS prover_k,
           NULL::VARCHAR AS prover_completer, NULL::VARCHAR AS prover_params, NULL::INTEGER AS prover_budget,
           b.q AS q_pi, b.n AS n_pi, b.q_source,
           1 - pow(1 - b.q, bo.k) AS q_mu, b.n AS n_mu, b.q_source AS q_mu_source
    FROM q b, unnest(ks) AS bo(k)
    UNION ALL
    SELECT b.solution_id, b.problem_id, b.step_index, b.gold,
           b.completer_model, b.params, b.budget,
           m.completer_model || '@' || left(md5(m.params), 8) || '/N' || m.budget, 'completer', NULL,
           m.completer_model, m.params, m.budget,
           b.q, b.n, b.q_source,
           m.q, m.n, m.q_source
    FROM q b
    JOIN q m ON m.solution_id = b.solution_id AND m.step_index = b.step_index
            AND NOT (m.completer_model = b.completer_model AND m.params = b.params AND m.budget = b.budget)
), advantages AS (
    SELECT *,
           lag(q_mu) OVER w AS q_mu_before,
           q_mu - lag(q_mu) OVER w AS a_mu
    FROM pairs
    WINDOW w AS (PARTITION BY solution_id, base_completer, base_params, base_budget, prover ORDER BY step_index)
)
SELECT solution_id, problem_id, step_index, gold,
       base_completer, base_params, base_budget,
       prover, prover_kind, prover_k, prover_completer, prover_params, prover_budget,
       q_pi, n_pi, q_mu_before, q_mu, n_mu, a_mu,
       q_pi + alpha * a_mu AS reward,
       q_source, q_mu_source
FROM advantages
WHERE step_index > 0;

CREATE OR REPLACE TEMP MACRO step_advantages(alpha := 0.5, k := 4) AS TABLE
SELECT * FROM step_advantages_for_ks([k], alpha := alpha);
