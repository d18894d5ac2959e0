-- The model of a kind an evaluation uses by default: the promoted one, else the newest.
SELECT * FROM prm_models WHERE kind = $kind ORDER BY promoted DESC, created_at DESC LIMIT 1;
