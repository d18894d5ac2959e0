-- Process advantages (PAV, "Rewarding Progress", Setlur et al. 2024): per solution step h, the
-- base policy's value Q_pi(h), a prover's value before and after the step, the advantage
-- A_mu(h) = Q_mu(h) - Q_mu(h-1), and the effective reward Q_pi(h) + alpha * A_mu(h).
-- Table macros, so alpha and K are arguments; step_advantages_for_ks pairs several Best-of-K
-- provers in one pass (it has no optional list argument: DuckLake cannot keep a NULL default):
--   SELECT * FROM step_advantages();                       -- alpha 0.5, Best-of-4 provers
--   SELECT * FROM step_advantages(alpha := 0.2, k := 2);
--   SELECT * FROM step_advantages_for_ks([2, 4, 8]);        -- bo2, bo4 and bo8
-- Values (`q_source`): Q(0) from the bare question's rollouts (`root`, labelled with +root), Q(h)
-- from prefix h's full-budget rollouts (`rollouts`: math_shepherd units; an early-stopped rate is
-- biased and an inferred label has no rate, so neither gives a value), Q(S) the solution's own
-- outcome (`outcome`), NULL where nothing was rolled out (`missing`). A value belongs to one
-- completer evaluation (completer, sampling, budget). For each base evaluation the provers are
-- `bo<K>`, Best-of-K of the base policy (analytic: 1 - (1 - Q_pi)^K, no rollouts), and every other
-- evaluation that rolled out the same prefixes (a separate prover model or sampling), named
-- completer@hash(sampling)/N. tasks/labelling/advantages.py holds the same formulas in Python.
-- step_values_of(problem_ids) computes the values (not the advantages: alpha and K are arguments)
-- of those problems; settled problems keep them in settled_step_values (migration 015, see
-- unsettled_problems).
CREATE OR REPLACE MACRO step_values_of(problem_ids) AS TABLE
WITH scope AS (
    SELECT unnest(problem_ids) AS problem_id
), prefix_values AS (  -- each unit's n and k are stored with its rollouts (migration 014)
    SELECT u.problem_id, u.prefix_hash, u.step_index = 0 AS root,
           CASE WHEN u.step_index = 0 THEN '' ELSE u.prefix_hash END AS state_key, u.completer_model, u.params, u.budget,
           sum(u.n)::BIGINT AS n, sum(u.k)::BIGINT AS c
    FROM work_units u
    WHERE u.strategy = 'math_shepherd' AND u.problem_id IN (SELECT problem_id FROM scope)
    GROUP BY ALL
), evaluations AS (  -- which evaluations rolled out some prefix of each problem
    SELECT DISTINCT problem_id, completer_model, params, budget FROM prefix_values
), states AS (  -- every solution's prefixes 0..S
    SELECT s.solution_id, s.problem_id, s.num_steps, s.correct, st.step_index, st.prefix_hash, st.gold
    FROM solutions s
    JOIN steps st USING (solution_id)
    WHERE s.problem_id IN (SELECT problem_id FROM scope)
    UNION ALL
    SELECT s.solution_id, s.problem_id, s.num_steps, s.correct, 0, '', NULL  -- '': the root's state_key
    FROM solutions s
    WHERE s.problem_id IN (SELECT problem_id FROM scope)
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
), counted AS (  -- how many evaluations rolled out some prefix of each problem
    SELECT problem_id, count(*) AS evaluations FROM evaluations GROUP BY problem_id
)
SELECT v.solution_id, v.problem_id, v.step_index, v.gold, v.completer_model, v.params, v.budget,
       ct.evaluations, v.n, v.c, v.q_source,
       v.c::DOUBLE / v.n AS q,
       -- problem_id (one per solution) in the partition lets a problem filter in
       lag(v.c::DOUBLE / v.n) OVER (PARTITION BY v.problem_id, v.solution_id, v.completer_model, v.params, v.budget
                                    ORDER BY v.step_index) AS q_before
FROM state_values v
JOIN counted ct USING (problem_id);

-- Every problem's, computed from its units, settled or not.
CREATE OR REPLACE VIEW step_values_live AS
SELECT * FROM step_values_of((SELECT list(problem_id) FROM problems));

-- What the macros read: a settled problem's stored values, an unsettled one's computed live.
CREATE OR REPLACE VIEW step_values AS
SELECT * FROM settled_step_values
WHERE problem_id NOT IN (SELECT problem_id FROM unsettled_problems)
UNION ALL
SELECT * FROM step_values_of((SELECT list(problem_id) FROM unsettled_problems));

CREATE OR REPLACE MACRO step_advantages_for_ks(ks, alpha := 0.5) AS TABLE
WITH live AS MATERIALIZED (  -- step_values, with its live part computed once for both sides of the pairs
    SELECT * FROM step_values_of((SELECT list(problem_id) FROM unsettled_problems))
), q AS NOT MATERIALIZED (
    SELECT * FROM settled_step_values
    WHERE problem_id NOT IN (SELECT problem_id FROM unsettled_problems)
    UNION ALL
    SELECT * FROM live
), pairs AS (
    SELECT b.solution_id, b.problem_id, b.step_index, b.gold,
           b.completer_model AS base_completer, b.params AS base_params, b.budget AS base_budget,
           'bo' || bo.k AS prover, 'best_of_k' AS prover_kind, bo.k AS prover_k,
           NULL::VARCHAR AS prover_completer, NULL::VARCHAR AS prover_params, NULL::INTEGER AS prover_budget,
           b.q AS q_pi, b.n AS n_pi, b.q_source,
           1 - pow(1 - b.q_before, bo.k) AS q_mu_before, 1 - pow(1 - b.q, bo.k) AS q_mu, b.n AS n_mu,
           b.q_source AS q_mu_source
    FROM q b, unnest(ks) AS bo(k)
    WHERE b.step_index > 0
    UNION ALL
    SELECT b.solution_id, b.problem_id, b.step_index, b.gold,
           b.completer_model, b.params, b.budget,
           m.completer_model || '@' || left(md5(m.params), 8) || '/N' || m.budget, 'completer', NULL,
           m.completer_model, m.params, m.budget,
           b.q, b.n, b.q_source,
           m.q_before, m.q, m.n, m.q_source
    FROM q b
    JOIN q m ON m.solution_id = b.solution_id AND m.step_index = b.step_index
            AND NOT (m.completer_model = b.completer_model AND m.params = b.params AND m.budget = b.budget)
    WHERE b.step_index > 0 AND b.evaluations > 1 AND m.evaluations > 1  -- only they have separate provers
)
SELECT solution_id, problem_id, step_index, gold,
       base_completer, base_params, base_budget,
       prover, prover_kind, prover_k, prover_completer, prover_params, prover_budget,
       q_pi, n_pi, q_mu_before, q_mu, n_mu, q_mu - q_mu_before AS a_mu,
       q_pi + alpha * (q_mu - q_mu_before) AS reward,
       q_source, q_mu_source
FROM pairs;

CREATE OR REPLACE MACRO step_advantages(alpha := 0.5, k := 4) AS TABLE
SELECT * FROM step_advantages_for_ks([k], alpha := alpha);
