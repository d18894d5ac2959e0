-- Labelled steps (outside test splits) of the solutions one run completed: those it sampled or
-- whose step prefixes it rolled out. A solution completed jointly by concurrent runs counts for
-- each of them; a rerun of a finished slice counts 0.
SELECT count(*) AS steps
FROM labelled_steps
WHERE split <> 'test'
  AND solution_id IN (
      SELECT solution_id FROM solutions WHERE run_id = $run_id
      UNION
      SELECT st.solution_id
      FROM rollouts r
      JOIN work_units u USING (unit_id)
      JOIN solutions s ON s.problem_id = u.problem_id
      JOIN steps st ON st.solution_id = s.solution_id AND st.prefix_hash = u.prefix_hash
      WHERE r.run_id = $run_id
  );
