-- Each work unit keeps how many of its rollouts were correct (k, next to its rollout count n),
-- written with its rollouts in one transaction. Estimates then sum (n, k) over units, O(units),
-- instead of aggregating every rollout on every query (issue 18: 10M rollouts made each saved
-- query re-aggregate all of them). Stores made before it get k counted from their rollouts here;
-- `prmf doctor` keeps checking k against the raw rollouts (doctor/units_with_wrong_correct_count.sql).
ALTER TABLE work_units ADD COLUMN k INTEGER;
UPDATE work_units SET k = (SELECT count(*) FILTER (WHERE r.correct) FROM rollouts r
                          WHERE r.unit_id = work_units.unit_id);
