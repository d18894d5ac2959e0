"""Search-based evaluation: verifier-guided beam search (:mod:`.beam`, the algorithm) run on
evaluation pools and stored with its cost (:mod:`.runner`)."""
