-- Step labels for reward-model training, in solution order (see views/20_labelled_steps.sql).
SELECT * FROM labelled_steps ORDER BY solution_id, step_index;
