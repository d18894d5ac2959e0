-- Every promotion decision with its evidence: validation accuracy of the new model and its baseline (the promoted model, or majority vote), the paired-bootstrap gain and its one-sided bound.
SELECT created_at, kind, candidate, baseline, method, aggregation, n, problems,
       round(candidate_accuracy, 3) AS new_acc, round(baseline_accuracy, 3) AS baseline_acc,
       round(difference, 3) AS gain, round(ci_low, 3) AS lower_bound, confidence, round(p_better, 3) AS p_better,
       promoted, reason, run_id
FROM promotion_decisions
ORDER BY created_at DESC, kind;
