-- Close a run: status, error and the tokens generated under it (solutions, rollouts, pool candidates).
UPDATE runs
SET status = $status, error = $error, finished_at = current_timestamp,
    tokens_generated = (SELECT coalesce(sum(num_tokens), 0) FROM generations WHERE run_id = $run_id)
                     + (SELECT coalesce(sum(num_tokens), 0) FROM rollouts WHERE run_id = $run_id)
                     + (SELECT coalesce(sum(num_tokens), 0) FROM eval_candidates WHERE run_id = $run_id)
WHERE run_id = $run_id;
