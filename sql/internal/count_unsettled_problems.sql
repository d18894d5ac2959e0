-- Problems whose estimates queries still compute from the units (see sql/views/05_unsettled_problems.sql).
SELECT count(*) FROM unsettled_problems;
