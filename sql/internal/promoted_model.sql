-- The promoted model of a kind (at most one).
SELECT * FROM prm_models WHERE kind = $kind AND promoted;
