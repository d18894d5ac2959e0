-- The first $n problems of each dataset split by source row (a training slice: TrainConfig.problem_limit).
SELECT problem_id
FROM problems
QUALIFY row_number() OVER (PARTITION BY dataset, split ORDER BY source_row, problem_id) <= $n;
