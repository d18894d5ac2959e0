-- Store.settle(recompute_all=True): every finished run settles again.
DELETE FROM settled_runs;
