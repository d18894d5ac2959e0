-- What labelling cost in one store: work units (completer requests), rollouts, generated tokens.
SELECT (SELECT count(*) FROM work_units) AS requests,
       (SELECT count(*) FROM rollouts) AS rollouts,
       (SELECT sum(num_tokens) FROM rollouts) AS tokens;
