-- prmf export (tasks/interchange/export.py): the problems an export reads, by problem_id; the
-- export queries them a range at a time (export_solutions.sql). Only problems with solutions.
--   $datasets, $splits   lists; empty: every dataset / every split but test
--   $include_eval        false: problems whose question is in an evaluation pool are left out
SELECT p.problem_id
FROM problems p
WHERE (len($datasets::VARCHAR[]) = 0 OR list_contains($datasets::VARCHAR[], p.dataset))
  AND CASE WHEN len($splits::VARCHAR[]) = 0 THEN p.split <> 'test' ELSE list_contains($splits::VARCHAR[], p.split) END
  AND ($include_eval OR p.question NOT IN (SELECT question FROM eval_candidates))
  AND EXISTS (SELECT 1 FROM solutions s WHERE s.problem_id = p.problem_id)
ORDER BY p.problem_id;
