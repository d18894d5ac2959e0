-- How many models of a kind are registered.
SELECT count(*) FROM prm_models WHERE kind = $kind;
