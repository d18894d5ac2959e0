-- Source rows already quarantined for a gold answer the grader cannot read (checked once, not again).
SELECT q.source, q.line, q.reason
FROM quarantine q
JOIN rows_ r ON r.source = q.source AND r.line = q.line
WHERE q.reason LIKE 'unparseable gold answer%';
