-- Problems a search already finished (their nodes and result are stored).
SELECT problem_id FROM search_results WHERE search_id = $search_id;
