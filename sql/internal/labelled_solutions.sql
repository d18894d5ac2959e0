-- Which of the `wanted` solutions finished their labelling under one label key.
SELECT l.solution_id FROM labelled_solutions l JOIN wanted w USING (solution_id) WHERE l.label_key = $label_key;
