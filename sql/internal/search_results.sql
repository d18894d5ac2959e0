-- A search's chosen answer per problem, with the generated tokens of its whole tree.
SELECT problem_id, correct, tokens, completed FROM search_results WHERE search_id = $search_id;
