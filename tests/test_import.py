"""`prmf import`: public step-labelled datasets into a real DuckDB store, through real flow runs.

Expected values are counted by hand from the bundled files (data/formats, data/processbench,
data/prm800k) or written here by hand; nothing is recomputed with the code under test."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.import_labels import import_labels
from tasks.config import ImportConfig, TrainConfig
from tasks.store import Store
from tasks.training import TrainingError, load_examples
from tests.helpers import seed_labelled_arith
from tests.test_training_precision import base  # noqa: F401  (SmolLM2-135M cut to 4 layers: the fixture)

pytestmark = pytest.mark.usefixtures("prefect_harness")

ROOT = Path(__file__).resolve().parent.parent
FORMATS = ROOT / "data" / "formats"
SHEPHERD = FORMATS / "samples_math-shepherd.jsonl"
runner = CliRunner()

TABLES = ("problems", "generations", "solutions", "steps", "imported_step_labels", "imports", "quarantine")


def _import(db, path, fmt, **more):
    return import_labels(config=ImportConfig(db=db, path=str(path), format=fmt, **more))


def _counts(db):
    with Store(db, read_only=True) as store:
        return {t: store.scalar(f"SELECT count(*) FROM {t}") for t in TABLES}


def _solutions(store, source, line):
    """(he, se, rating) per step, and the solution row, of every solution imported from ``line``."""
    rows = store.query("""
        SELECT s.solution_id, s.correct, s.num_steps, s.num_tokens, s.generator_model, p.gold_answer, p.meta,
               list(st.text ORDER BY st.step_index) AS texts,
               list(struct_pack(i := st.step_index, he := l.he, se := l.se, rating := l.rating) ORDER BY st.step_index) AS labels
        FROM solutions s JOIN problems p USING (problem_id) JOIN steps st USING (solution_id)
        LEFT JOIN imported_step_labels l ON l.solution_id = st.solution_id AND l.step_index = st.step_index
        WHERE p.source = ? AND p.source_row = ?
        GROUP BY ALL ORDER BY s.solution_id""", [str(source), line]).as_dicts()
    return rows


def test_every_bundled_sample_imports_cleanly_with_its_labels(db_path):
    expected = {  # file, format -> (records read, solutions imported), counted by hand
        (SHEPHERD, "math-shepherd"): (7, 7),
        (FORMATS / "samples_prm800k.jsonl", "prm800k"): (6, 6),
        (FORMATS / "samples_math-aps.jsonl", "math-aps"): (124, 124),
        (FORMATS / "samples_math-aps-tree.jsonl", "math-aps-tree"): (242, 156),
    }
    for (path, fmt), (read, imported) in expected.items():
        result = _import(db_path, path, fmt)
        assert (result["read"], result["imported"], result["quarantined"]) == (read, imported, 0), fmt
        assert result["dataset"] == fmt and result["split"] == "train" and not result["already_imported"]
    with Store(db_path, read_only=True) as store:
        assert store.scalar("SELECT count(*) FROM quarantine") == 0
        # Math-Shepherd line 1: 5 steps, + + + + -, no gold answer (marked), wrong (its last step is).
        [ms] = _solutions(store, SHEPHERD, 1)
        assert [l["he"] for l in ms["labels"]] == [True, True, True, True, False]
        assert [l["se"] for l in ms["labels"]] == [None] * 5
        assert ms["texts"][0] == "Janet spends 3 hours + 5 hours = <<3+5=8>>8 hours per week on music lessons."
        assert ms["texts"][4].endswith("The answer is: 13520")
        assert (ms["correct"], ms["num_steps"], ms["num_tokens"], ms["gold_answer"]) == (False, 5, 0, "")
        assert ms["generator_model"] == "import:math-shepherd" and json.loads(ms["meta"])["gold_unknown"] is True
        # 25 steps in the 7 records (5 + 3 + 2 + 5 + 5 + 2 + 3), 5 of them '+', every last step '-'.
        assert store.query("""SELECT count(*), count(*) FILTER (WHERE l.he) FROM imported_step_labels l
                              JOIN solutions s USING (solution_id) WHERE s.generator_model = 'import:math-shepherd'
                           """).rows == [(25, 5)]
        assert store.scalar("SELECT count(*) FROM solutions WHERE generator_model = 'import:math-shepherd' "
                            "AND correct") == 0
        # PRM800K line 1: 6 steps, the second written by the labeller (no rating, taken as right); correct.
        [p1] = _solutions(store, FORMATS / "samples_prm800k.jsonl", 1)
        assert [l["rating"] for l in p1["labels"]] == [1, None, 1, 1, 1, 1]
        assert [l["he"] for l in p1["labels"]] == [True] * 6 and p1["correct"] and p1["gold_answer"] == "29"
        assert p1["texts"][1] == "We have $3p+e=1.24$ and $5p+e=1.82$."
        # Line 2 (found_error): ratings 1 0 1 1 1 1, then the pre-generated step rated -1 ends it.
        [p2] = _solutions(store, FORMATS / "samples_prm800k.jsonl", 2)
        assert [l["rating"] for l in p2["labels"]] == [1, 0, 1, 1, 1, 1, -1]
        assert [l["he"] for l in p2["labels"]] == [True] * 6 + [False] and not p2["correct"]
        assert p2["gold_answer"] == "28800"
        # Line 5 (give_up): 7 steps rated 1, the labeller's own 8th step, then a 9th with no completion at
        # all ends it: right steps, yet no finished solution. Line 6: no gold answer.
        [p5] = _solutions(store, FORMATS / "samples_prm800k.jsonl", 5)
        assert [l["rating"] for l in p5["labels"]] == [1] * 7 + [None] and not p5["correct"]
        assert [l["he"] for l in p5["labels"]] == [True] * 8
        [p6] = _solutions(store, FORMATS / "samples_prm800k.jsonl", 6)
        assert p6["num_steps"] == 12 and p6["correct"] and p6["gold_answer"] == "" and json.loads(p6["meta"])["gold_unknown"]
        # MATH-APS flat, line 2 (13 prefixes): root 0.1875; three leaves 1.0 below it; one child 0.03125
        # (listed twice; the first value is kept) with leaves 1.0, 1.0, 1.0 and a child 0.0 whose leaf is 0.0.
        aps = _solutions(store, FORMATS / "samples_math-aps.jsonl", 2)
        assert sorted(tuple(l["se"] for l in s["labels"]) for s in aps) == sorted(
            [(1.0,)] * 3 + [(0.03125, 1.0)] * 3 + [(0.03125, 0.0, 0.0)])
        assert sorted(s["correct"] for s in aps) == [False] + [True] * 6 and {s["gold_answer"] for s in aps} == {"4"}
        assert all(l["he"] == (l["se"] > 0) for s in aps for l in s["labels"])
        # MATH-APS tree, line 1: the root's 16 children; 15 are leaves with mc_value 1.0.
        tree = _solutions(store, FORMATS / "samples_math-aps-tree.jsonl", 1)
        assert sum(s["num_steps"] == 1 for s in tree) == 15
        assert {tuple(l["se"] for l in s["labels"]) for s in tree if s["num_steps"] == 1} == {(1.0,)}
        # Children 7, 8 and 13 (leaves) start "Given that", the other 13 "To determine".
        assert sum(s["texts"][0].startswith("Given that") for s in tree if s["num_steps"] == 1) == 3
        # Steps carry the factory's prefix hash: a one-line solution's first prefix is its text + "\n".
        from tasks.store import content_key

        assert store.scalar("SELECT prefix_hash FROM steps WHERE solution_id = ? AND step_index = 1",
                            [ms["solution_id"]]) == content_key(ms["texts"][0] + "\n")
        runs = store.query("SELECT DISTINCT flow_name, status FROM runs").rows
    assert runs == [("import", "completed")]


def test_processbench_prm800k_parquet_trl_and_openrlhf(db_path, tmp_path):
    result = _import(db_path, ROOT / "data" / "processbench" / "gsm8k.json", "processbench")
    assert (result["dataset"], result["read"], result["imported"], result["quarantined"]) == (
        "processbench-gsm8k", 400, 400, 0)
    # The PRM800K phase-1 Parquet: 106 labelling trajectories; 3 have no chosen step.
    parquet = ROOT / "data" / "prm800k" / "phase1_test.stepwise-critic.parquet"
    pq_result = _import(db_path, parquet, "prm800k")
    assert (pq_result["read"], pq_result["quarantined"]) == (106, 3)
    assert pq_result["reasons"][0] == "line 1045: a trajectory of 6 rows with no preferred step"
    trl = tmp_path / "trl.jsonl"
    trl.write_text(json.dumps({"prompt": "What is 2 + 3?", "completions": ["2 + 3 = 5", "The answer is 5."],
                               "labels": [True, True], "soft_labels": [0.75, None]}) + "\n")
    openrlhf = tmp_path / "openrlhf.jsonl"
    openrlhf.write_text(json.dumps({"input": "What is 2 + 4? Step 1: 2 + 4 = 7 <PRM>\nStep 2: The answer is 7. <PRM>",
                                    "label": [0.25, 0.0]}) + "\n")
    assert _import(db_path, trl, "trl")["imported"] == 1
    assert _import(db_path, openrlhf, "openrlhf", placeholder="<PRM>")["imported"] == 1
    import datasets

    rows = [{"prompt": "What is 1 + 1?", "completions": ["1 + 1 = 3", "The answer is 3."], "labels": [False, False]}]
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "trl.parquet"))
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)}).save_to_disk(str(tmp_path / "trl_saved"))
    assert _import(db_path, tmp_path / "trl.parquet", "trl", dataset="trl-pq")["imported"] == 1
    assert _import(db_path, tmp_path / "trl_saved", "trl", dataset="trl-disk")["imported"] == 1
    with Store(db_path, read_only=True) as store:
        # ProcessBench gsm8k-0: 4 steps, earliest error at index 1: right, wrong, then no labels.
        [pb] = _solutions(store, ROOT / "data" / "processbench" / "gsm8k.json", 1)
        assert [l["he"] for l in pb["labels"]] == [True, False, None, None] and not pb["correct"]
        assert store.scalar("SELECT count(*) FROM imported_step_labels WHERE solution_id = ?", [pb["solution_id"]]) == 2
        # The Parquet's first trajectory is the raw sample's line 1: the same 6 steps and ratings.
        [first] = _solutions(store, parquet, 1)
        assert [l["rating"] for l in first["labels"]] == [1, None, 1, 1, 1, 1] and first["correct"]
        assert first["texts"][1] == "We have $3p+e=1.24$ and $5p+e=1.82$."
        [t] = _solutions(store, trl, 1)
        assert [(l["he"], l["se"]) for l in t["labels"]] == [(True, 0.75), (True, None)] and t["correct"]
        [o] = _solutions(store, openrlhf, 1)
        assert o["texts"] == ["2 + 4 = 7", "The answer is 7."]
        assert [(l["he"], l["se"]) for l in o["labels"]] == [(True, 0.25), (False, 0.0)] and not o["correct"]
        for source in (tmp_path / "trl.parquet", tmp_path / "trl_saved"):
            [r] = _solutions(store, source, 1)
            assert [l["he"] for l in r["labels"]] == [False, False] and r["texts"] == ["1 + 1 = 3", "The answer is 3."]
        # Training rows: ProcessBench questions are evaluation questions and never trained on; the
        # TRL step without a soft value trains on its hard label under target se.
        examples, excluded = load_examples(store, TrainConfig(db=db_path, labels="imported", target="se",
                                                              datasets=("processbench-gsm8k", "trl")))
        assert excluded == 375 and [e.targets for e in examples] == [(0.75, 1.0)]
        orm, _ = load_examples(store, TrainConfig(db=db_path, kind="orm", labels="imported", datasets=("openrlhf",)))
        assert [e.targets for e in orm] == [(0.0,)]


def test_bad_records_are_quarantined_and_the_rest_imported(db_path, tmp_path):
    _import(db_path, FORMATS / "samples_prm800k.jsonl", "prm800k")  # already stored: must survive
    before = _counts(db_path)
    lines = SHEPHERD.read_text().splitlines()
    bad = json.loads(lines[2])
    bad["label"] = bad["label"].replace(" -\n", " x\n", 1)  # record 3: step 1 is marked "x"
    missing = {"input": json.loads(lines[4])["input"]}
    dirty = lines[:2] + [json.dumps(bad), "{not json", json.dumps(missing)] + lines[3:4] + lines[5:]
    path = tmp_path / "dirty.jsonl"
    path.write_text("\n".join(dirty) + "\n")
    result = _import(db_path, path, "math-shepherd")
    assert (result["read"], result["imported"], result["quarantined"]) == (8, 5, 3)
    with Store(db_path, read_only=True) as store:
        rows = store.query("SELECT source, line, reason FROM quarantine ORDER BY line").rows
        assert rows == [(str(path), 3, "label of step 1 is 'x', not '+' or '-'"),
                        (str(path), 4, "invalid JSON: Expecting property name enclosed in double quotes at col 2"),
                        (str(path), 5, "no 'label' string field")]
        assert store.scalar("SELECT records_quarantined FROM imports WHERE source = ?", [str(path)]) == 3
    after = _counts(db_path)
    assert after["solutions"] == before["solutions"] + 5 and after["quarantine"] == 3
    assert after["imported_step_labels"] >= before["imported_step_labels"] + 5
    # A ProcessBench record whose error index is past its steps.
    pb = tmp_path / "pb.json"
    pb.write_text(json.dumps([{"problem": "q?", "steps": ["a", "b"], "label": 2, "final_answer_correct": False},
                              {"problem": "q?", "steps": ["a", "b"], "label": 0, "final_answer_correct": False}]))
    assert list(_import(db_path, pb, "processbench")["reasons"]) == ["line 1: 'label' is 2, not -1 or a step index in 0..1"]
    with Store(db_path, read_only=True) as store:  # its line 2: step 1 wrong, step 2 unlabelled: no loss even kept
        examples, _ = load_examples(store, TrainConfig(db=db_path, labels="imported", after_first_error="keep",
                                                       datasets=("processbench-pb",)))
    assert [e.targets for e in examples] == [(0.0, None)]
    # A TRL record with 4 steps but 3 labels.
    trl = tmp_path / "trl.jsonl"
    trl.write_text(json.dumps({"prompt": "q", "completions": ["a", "b", "c", "d"], "labels": [True] * 3}) + "\n")
    assert list(_import(db_path, trl, "trl")["reasons"]) == ["line 1: 4 steps but 3 labels"]


def test_reimporting_the_same_file_adds_nothing(db_path):
    first = _import(db_path, SHEPHERD, "math-shepherd")
    stored = _counts(db_path)
    again = _import(db_path, SHEPHERD, "math-shepherd")
    assert again["already_imported"] and again["import_id"] == first["import_id"] and again["imported"] == 7
    assert _counts(db_path) == stored
    # Into another split it is another import (other problems).
    other = _import(db_path, SHEPHERD, "math-shepherd", split="extra")
    assert not other["already_imported"] and _counts(db_path)["problems"] == stored["problems"] + 7


def test_cli_imports_with_a_summary_and_says_already_imported(db_path):
    args = ["import", str(SHEPHERD), "--format", "math-shepherd", "--db", str(db_path)]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["read"], summary["imported"], summary["quarantined"], summary["steps"]) == (7, 7, 0, 25)
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "already imported" in again.stdout
    assert runner.invoke(app, ["import", "--db", str(db_path)]).exit_code == 2  # no file
    assert "no such file" in runner.invoke(app, ["import", "nope.jsonl", "--db", str(db_path)]).output


def test_a_store_made_before_migration_13_opens_and_imports(tmp_path):
    """tests/data/store-v6.duckdb.gz was written by an older version (schema 6)."""
    db = tmp_path / "old.duckdb"
    with gzip.open(ROOT / "tests" / "data" / "store-v6.duckdb.gz") as packed, open(db, "wb") as out:
        shutil.copyfileobj(packed, out)
    with Store(db, read_only=True) as old:
        kept = {t: old.scalar(f"SELECT count(*) FROM {t}") for t in ("problems", "solutions", "steps", "rollouts")}
        labelled = old.scalar("SELECT count(*) FROM labelled_steps")
    with Store(db) as store:
        assert store.scalar("SELECT max(version) FROM schema_migrations") == 15
        assert store.scalar("SELECT count(*) FROM imports") == 0
    result = _import(db, SHEPHERD, "math-shepherd")
    assert result["imported"] == 7
    with Store(db, read_only=True) as store:
        assert store.scalar("SELECT count(*) FROM problems") == kept["problems"] + 7
        assert store.scalar("SELECT count(*) FROM rollouts") == kept["rollouts"]
        assert store.scalar("SELECT count(*) FROM labelled_steps") == labelled


def test_imported_problems_are_not_the_factorys_to_label_and_not_its_growth(db_path):
    with Store(db_path) as store:
        seed_labelled_arith(store, 3)
        labelled = store.scalar("SELECT count(*) FROM labelled_steps")
        factory_ids = [p for (p,) in store.query("SELECT problem_id FROM problems").rows]
    assert labelled > 0
    # MATH-APS tree solutions of one step: complete through their final answer alone, were they factory ones.
    _import(db_path, FORMATS / "samples_math-aps-tree.jsonl", "math-aps-tree")
    _import(db_path, SHEPHERD, "math-shepherd")
    with Store(db_path) as store:
        assert store.scalar("SELECT count(*) FROM labelled_steps") == labelled
        assert store.scalar("SELECT count(*) FROM solutions WHERE num_steps = 1 AND generator_model LIKE 'import:%'") > 0
        unknown = [p for (p,) in store.query("SELECT problem_id FROM problems WHERE dataset = 'math-shepherd'").rows]
        assert len(unknown) == 7 and store.problems_by_id(unknown) == []  # what generation and labelling read
        assert len(store.problems_by_id(factory_ids)) == 3
        from tasks.registry import label_snapshot

        assert label_snapshot(store)["labelled_steps"] == labelled
        # The factory's own training data does not change either.
        factory, _ = load_examples(store, TrainConfig(db=db_path))
        assert {e.problem_id for e in factory} <= set(factory_ids)
    with Store(db_path) as store:
        store.query("DELETE FROM steps WHERE solution_id IN (SELECT solution_id FROM solutions WHERE problem_id IN "
                    "(SELECT problem_id FROM problems WHERE split = 'train' AND dataset = 'arith'))")
        with pytest.raises(TrainingError, match="no fully labelled solutions"):
            from tasks.training import train_reward_model

            train_reward_model(store, TrainConfig(db=db_path, epochs=1))


def test_a_prm_trained_on_imported_labels_registers_and_scores(db_path, tmp_path, base):  # noqa: F811
    from flows.train import train as train_flow

    _import(db_path, SHEPHERD, "math-shepherd")
    config = TrainConfig(db=db_path, labels="imported", base_model=str(base), models_dir=tmp_path / "models",
                         epochs=1, batch_size=4, val_fraction=0.3, max_length=256)
    result = train_flow(config=config)
    with Store(db_path, read_only=True) as store:
        row = store.query("SELECT kind, target, solution_tokens, rollout_tokens, training_tokens, run_id FROM prm_models "
                          "WHERE model_id = ?", [result["model_id"]]).as_dicts()[0]
    assert (row["kind"], row["target"], row["solution_tokens"], row["rollout_tokens"]) == ("prm", "he", 0, 0)
    assert row["training_tokens"] > 0
    assert result["train_examples"] + result["val_examples"] == 7
    source = tmp_path / "solutions.jsonl"
    source.write_text(json.dumps({"question": "What is 2 + 3?", "steps": ["2 + 3 = 5", "The answer is 5."]}) + "\n")
    scored = runner.invoke(app, ["score", "--file", str(source), "--db", str(db_path)])  # the newest PRM
    assert scored.exit_code == 0, scored.output
    [line] = [json.loads(x) for x in scored.stdout.splitlines()]
    assert line["model_id"] == result["model_id"] and len(line["step_scores"]) == 2
    assert all(0 < s < 1 for s in line["step_scores"])
