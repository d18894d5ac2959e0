-- How much labelled data exists: the snapshot recorded with every trained model. labelled_steps
-- (outside test splits) is what the factory's growth trigger compares against.
SELECT (SELECT count(*) FROM solutions)                         AS solutions,
       (SELECT count(*) FROM step_estimates)                    AS steps,
       (SELECT count(*) FROM labelled_steps WHERE split <> 'test') AS labelled_steps,
       (SELECT count(*) FROM rollouts)                          AS rollouts,
       (SELECT max(created_at) FROM rollouts)                   AS last_rollout_at,
       (SELECT arg_max(run_id, created_at) FROM rollouts)       AS last_rollout_run;
