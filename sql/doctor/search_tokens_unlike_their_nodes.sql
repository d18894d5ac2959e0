-- Every beam-search result's token count is the sum of its stored nodes' tokens, and its chosen node is a completed node of that search.
-- fix: delete the listed search_results rows and the search's search_nodes rows for those problems, then rerun `prmf eval --method beam`
SELECT r.search_id, r.problem_id, r.tokens, sum(n.num_tokens) AS node_tokens
FROM search_results r
LEFT JOIN search_nodes n USING (search_id, problem_id)
GROUP BY r.search_id, r.problem_id, r.tokens, r.node_id
HAVING r.tokens <> coalesce(sum(n.num_tokens), 0)
    OR (r.node_id IS NOT NULL AND count(*) FILTER (WHERE n.node_id = r.node_id AND n.outcome = 'completed') <> 1)
LIMIT 20;
