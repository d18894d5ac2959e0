-- The digest of the views and macros the lake holds (NULL before the first write).
SELECT max_by(digest, written_at) FROM lake_objects WHERE name = 'views';
