-- Record the digest of the views and macros just written.
INSERT INTO lake_objects (name, digest) VALUES ('views', $digest);
