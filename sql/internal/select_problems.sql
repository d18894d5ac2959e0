-- Problems by id (the `ids` Arrow table is registered by the store), in source order.
SELECT p.* FROM problems p JOIN ids USING (problem_id) ORDER BY p.dataset, p.split, p.source_row;
