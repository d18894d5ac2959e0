-- Every question of every evaluation pool: never trained on, whatever split it was ingested under.
SELECT DISTINCT question FROM eval_candidates;
