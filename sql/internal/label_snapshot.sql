-- How much labelled data exists: the snapshot recorded with every trained model.
SELECT (SELECT count(*) FROM solutions)                   AS solutions,
       (SELECT count(*) FROM step_estimates)              AS steps,
       (SELECT count(*) FROM rollouts)                    AS rollouts,
       (SELECT max(created_at) FROM rollouts)             AS last_rollout_at,
       (SELECT arg_max(run_id, created_at) FROM rollouts) AS last_rollout_run;
