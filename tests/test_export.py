"""prmf export: the store's step labels in the formats PRM trainers read.

Two kinds of store: one labelled by a real label flow run (the embedded engine), checked with
the trainers' own tokenisation (TRL's PRMTrainer.tokenize_row; OpenRLHF's documented placeholder
rule) against the store's labelled_steps view; and one seeded with labels known by construction
(tests/helpers.seed_labelled_arith), checked against hand-computed values."""

from __future__ import annotations

import json
import os

import datasets
import pyarrow.parquet as pq
import pytest

from flows.export import export
from flows.label import label
from tasks.config import ExportConfig, LabelConfig
from tasks.interchange.formats import decode_math_shepherd
from tasks.models import EMBEDDED_MODEL, embedded_model_dir
from tasks.store import Store
from tests.helpers import seed_labelled_arith

PLACEHOLDER = "<empty_output>"  # an unused special token of SmolLM2's tokenizer: one token wherever it stands


@pytest.fixture(scope="module")
def labelled_db(tmp_path_factory, prefect_harness, _engines_closed_at_exit):
    """A store labelled by a real label run: 3 arith problems, 3 solutions each, 2 rollouts per prefix."""
    db = tmp_path_factory.mktemp("export") / "store.duckdb"
    label(config=LabelConfig.model_validate(dict(
        db=db, dataset={"name": "arith", "limit": 3}, solutions=3, rollouts=2,
        generation={"temperature": 0.8, "max_tokens": 80}, rollout={"temperature": 0.7, "max_tokens": 48})))
    return db


def store_labels(db, column: str = "he") -> dict[str, list]:
    """Per solution, its step labels in order, read from the labelled_steps view (not the export's SQL)."""
    with Store(db, read_only=True) as store:
        rows = store.query(f"SELECT solution_id, {column} FROM labelled_steps WHERE split <> 'test' "
                           "ORDER BY solution_id, step_index").rows
    out: dict[str, list] = {}
    for solution, value in rows:
        out.setdefault(solution, []).append(value)
    return out


@pytest.mark.engine
def test_trl_export_tokenised_by_trl_labels_every_step_as_stored(prefect_harness, labelled_db, tmp_path):
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from transformers import AutoTokenizer
    from trl.experimental.prm import PRMTrainer

    out = tmp_path / "trl"
    result = export(config=ExportConfig(db=labelled_db, out=out, format="trl"))
    he, se = store_labels(labelled_db), store_labels(labelled_db, "se")
    assert result["solutions"] == len(he) > 0 and result["steps"] == sum(len(v) for v in he.values())
    dataset = datasets.load_from_disk(str(out / "hf"))["train"]
    assert len(dataset) == len(he)
    tokenizer = AutoTokenizer.from_pretrained(embedded_model_dir())
    for row in dataset:
        tokens = PRMTrainer.tokenize_row(row, tokenizer, step_separator="\n", max_length=None,
                                         max_completion_length=None, train_on_last_step_only=False, is_eval=False)
        labelled = [v for v in tokens["labels"] if v != -100]
        assert len(labelled) == len(row["completions"])  # one labelled position per step
        assert labelled == [int(v) for v in he[row["solution_id"]]]
        assert row["soft_labels"] == pytest.approx(se[row["solution_id"]])
    # The card names the format's caveat, the provenance and the export run.
    card = (out / "README.md").read_text()
    assert "`int()`" in card and "soft_labels" in card and result["run_id"] in card
    assert "| rollouts | math_shepherd |" in card and "| generation |" in card


@pytest.mark.engine
def test_openrlhf_export_holds_one_placeholder_token_per_label(prefect_harness, labelled_db, tmp_path):
    from transformers import AutoTokenizer

    out = tmp_path / "openrlhf"
    export(config=ExportConfig(db=labelled_db, out=out, format="openrlhf", outputs=("jsonl",),
                               placeholder=PLACEHOLDER, tokenizer=EMBEDDED_MODEL))
    he = store_labels(labelled_db)
    tokenizer = AutoTokenizer.from_pretrained(embedded_model_dir())
    # OpenRLHF's rule (ProcessRewardDataset): the placeholder is one token id; the labels go to
    # the positions holding it, one per label.
    (placeholder_id,) = tokenizer.encode(PLACEHOLDER, add_special_tokens=False)
    records = [json.loads(line) for f in sorted((out / "data").glob("*.jsonl")) for line in f.open()]
    assert len(records) == len(he)
    for record in records:
        ids = tokenizer(record["input"], add_special_tokens=False)["input_ids"]
        assert ids.count(placeholder_id) == len(record["label"])
        assert record["label"] == ["+" if v else "-" for v in he[record["solution_id"]]]
    # Math-Shepherd's own tag is two tokens of this tokenizer: refused, with a token that works named.
    with pytest.raises(Exception, match=r"'ки' is 2 tokens .* needs one"):
        export(config=ExportConfig(db=labelled_db, out=tmp_path / "bad", format="openrlhf",
                                   tokenizer=EMBEDDED_MODEL))
    assert not (tmp_path / "bad").exists()


@pytest.mark.engine
@pytest.mark.parametrize("fmt", ["trl", "math-shepherd", "openrlhf"])
def test_export_then_import_gives_back_the_same_steps_and_labels(prefect_harness, labelled_db, tmp_path, fmt):
    from flows.import_labels import import_labels
    from tasks.config import ImportConfig

    expected: dict[tuple, tuple[list, list]] = {}
    with Store(labelled_db, read_only=True) as store:
        for solution, question, text, he, se in store.query(
                "SELECT solution_id, question, text, he, se FROM labelled_steps WHERE split <> 'test' "
                "ORDER BY solution_id, step_index").rows:
            expected.setdefault(solution, (question, [], [], []))
            for values, value in zip(expected[solution][1:], (text, he, se)):
                values.append(value)
    expected = {(q, tuple(steps)): (he, se) for q, steps, he, se in expected.values()}
    placeholder = {"placeholder": PLACEHOLDER} if fmt == "openrlhf" else {}
    ext = "parquet" if fmt == "trl" else "jsonl"
    export(config=ExportConfig(db=labelled_db, out=tmp_path / "out", format=fmt, outputs=(ext,), **placeholder))
    db = tmp_path / "imported.duckdb"
    for path in sorted((tmp_path / "out" / "data").glob(f"*.{ext}")):
        import_labels(config=ImportConfig(db=db, path=str(path), format=fmt, **placeholder))
    with Store(db, read_only=True) as store:
        assert store.scalar("SELECT count(*) FROM quarantine") == 0
        rows = store.query(
            "SELECT p.question, list(st.text ORDER BY st.step_index), list(l.he ORDER BY l.step_index), "
            "list(l.se ORDER BY l.step_index) FROM imported_step_labels l "
            "JOIN steps st USING (solution_id, step_index) JOIN solutions s ON s.solution_id = l.solution_id "
            "JOIN problems p USING (problem_id) GROUP BY p.question, l.solution_id").rows
    got = {(q, tuple(steps)): (he, se) for q, steps, he, se in rows}
    assert set(got) == set(expected)
    for key, (he, se) in expected.items():
        assert got[key][0] == he
        if fmt == "trl":  # the only one of the three formats that carries the soft value too
            assert got[key][1] == pytest.approx(se)


def seeded(tmp_path, problems: int = 3):
    """Problems labelled by construction: per problem a right solution (every step correct, SE 0.5
    on its rolled-out prefixes: 2 of 4 rollouts correct, SE 1 on the final step) and a wrong one
    (every step wrong, SE 0)."""
    db = tmp_path / "seeded.duckdb"
    with Store(db) as store:
        seed_labelled_arith(store, problems)
        seed_labelled_arith(store, 1, split="test", start=500)  # test split: never exported by default
        solutions = {sid: (correct, n) for sid, correct, n in store.query(
            "SELECT solution_id, correct, num_steps FROM solutions s JOIN problems p USING (problem_id) "
            "WHERE p.split = 'train'").rows}
    return db, solutions


def rows_of(out):
    return [r for f in sorted((out / "data").glob("*.parquet")) for r in pq.read_table(f).to_pylist()]


def test_seeded_labels_come_out_exactly_in_every_format(prefect_harness, tmp_path):
    db, solutions = seeded(tmp_path)
    assert len(solutions) == 6

    export(config=ExportConfig(db=db, out=tmp_path / "trl"))
    trl = rows_of(tmp_path / "trl")
    assert {r["solution_id"] for r in trl} == set(solutions)  # the test split's are left out
    for r in trl:
        correct, n = solutions[r["solution_id"]]
        assert r["labels"] == [correct] * n
        assert r["soft_labels"] == ([0.5] * (n - 1) + [1.0] if correct else [0.0] * n)
        assert r["split"] == "train"

    export(config=ExportConfig(db=db, out=tmp_path / "gold", label="gold", after_first_error="drop"))
    for r in rows_of(tmp_path / "gold"):
        correct, n = solutions[r["solution_id"]]
        assert r["labels"] == ([True] * n if correct else [False])  # cut after the first wrong step
        assert r["soft_labels"] == [None] * len(r["labels"])

    export(config=ExportConfig(db=db, out=tmp_path / "se", label="se", se_threshold=0.6))
    for r in rows_of(tmp_path / "se"):  # SE 0.5 < 0.6: only a right solution's final step is correct
        correct, n = solutions[r["solution_id"]]
        assert r["labels"] == ([False] * (n - 1) + [True] if correct else [False] * n)

    export(config=ExportConfig(db=db, out=tmp_path / "ms", format="math-shepherd"))
    for r in rows_of(tmp_path / "ms"):
        decoded = decode_math_shepherd(r)
        correct, n = solutions[r["solution_id"]]
        assert decoded.labels == (correct,) * n and r["input"].count(" ки") == n
        with Store(db, read_only=True) as store:
            steps = [t for (t,) in store.query("SELECT text FROM steps WHERE solution_id = ? ORDER BY step_index",
                                               [r["solution_id"]]).rows]
        assert list(decoded.steps) == steps

    export(config=ExportConfig(db=db, out=tmp_path / "pb", format="processbench"))
    for r in rows_of(tmp_path / "pb"):
        correct, _ = solutions[r["id"]]
        assert (r["label"], r["final_answer_correct"]) == ((-1, True) if correct else (0, False))

    export(config=ExportConfig(db=db, out=tmp_path / "pairs", format="pairs"))
    pairs = rows_of(tmp_path / "pairs")
    assert len(pairs) == 3 and {r["rejected_first_error"] for r in pairs} == {0}
    for r in pairs:
        assert solutions[r["chosen_solution_id"]][0] and not solutions[r["rejected_solution_id"]][0]
        assert r["chosen"] == "\n".join(r["chosen_steps"])


def test_export_streams_into_shards_and_never_overwrites(prefect_harness, tmp_path):
    db, solutions = seeded(tmp_path)
    out = tmp_path / "sharded"
    result = export(config=ExportConfig(db=db, out=out, outputs=("parquet", "jsonl", "hf"), shard_rows=4))
    names = sorted(p.name for p in (out / "data").iterdir())
    assert names == ["train-00000-of-00002.jsonl", "train-00000-of-00002.parquet",
                     "train-00001-of-00002.jsonl", "train-00001-of-00002.parquet"]
    assert [pq.read_table(out / "data" / n).num_rows for n in names if n.endswith(".parquet")] == [4, 2]
    assert sum(1 for n in names if n.endswith(".jsonl") for _ in (out / "data" / n).open()) == 6
    assert len(datasets.load_from_disk(str(out / "hf"))["train"]) == result["rows"] == 6
    # A second export to the same folder is refused through the CLI, naming the folder; nothing changes.
    before = sorted(p.name for p in out.rglob("*"))
    from typer.testing import CliRunner

    from flows.cli import app

    refused = CliRunner().invoke(app, ["export", str(out), "--db", str(db)])
    assert refused.exit_code == 2 and f"{out} exists and is not an empty folder" in refused.output.replace("\n", "")
    assert sorted(p.name for p in out.rglob("*")) == before


@pytest.mark.engine
def test_processbench_export_imports_back_to_the_stores_earliest_errors(prefect_harness, labelled_db, tmp_path):
    from flows.import_labels import import_labels
    from tasks.config import ImportConfig

    # Expected, from the labelled_steps view: steps before the first wrong one correct, that one
    # wrong, the rest unlabelled (ProcessBench records only the earliest error).
    expected = {}
    with Store(labelled_db, read_only=True) as store:
        texts = dict(store.query("SELECT solution_id, list(text ORDER BY step_index) FROM steps GROUP BY 1").rows)
    for solution, he in store_labels(labelled_db).items():
        first = he.index(False) if False in he else len(he)
        expected[tuple(texts[solution])] = [True] * first + [False] * (first < len(he)) + [None] * (len(he) - first - 1)
    export(config=ExportConfig(db=labelled_db, out=tmp_path / "out", format="processbench", outputs=("jsonl",)))
    db = tmp_path / "imported.duckdb"
    for path in sorted((tmp_path / "out" / "data").glob("*.jsonl")):
        import_labels(config=ImportConfig(db=db, path=str(path), format="processbench"))
    with Store(db, read_only=True) as store:
        assert store.scalar("SELECT count(*) FROM quarantine") == 0
        got = {tuple(steps): he for steps, he in store.query(  # a step with no imported label: None
            "SELECT list(st.text ORDER BY st.step_index), list(l.he ORDER BY st.step_index) FROM steps st "
            "LEFT JOIN imported_step_labels l USING (solution_id, step_index) GROUP BY st.solution_id").rows}
    assert got == expected and any(False in he for he in expected.values())


def test_chunked_queries_give_the_same_export_and_pairs_never_straddle_a_chunk(prefect_harness, tmp_path):
    db, solutions = seeded(tmp_path, problems=5)
    runs = {}
    for fmt in ("trl", "pairs"):
        for per_query in (1, 2, 2_000):
            out = tmp_path / f"{fmt}-{per_query}"
            export(config=ExportConfig(db=db, out=out, format=fmt, problems_per_query=per_query))
            runs[fmt, per_query] = rows_of(out)
        assert runs[fmt, 1] == runs[fmt, 2] == runs[fmt, 2_000]
    assert {r["solution_id"] for r in runs["trl", 1]} == set(solutions)
    # One right and one wrong solution per problem: exactly one pair each, both of that problem,
    # whatever the chunking (a problem is never split across two queries).
    pairs = runs["pairs", 1]
    with Store(db, read_only=True) as store:
        problem_of = dict(store.query("SELECT solution_id, problem_id FROM solutions").rows)
    assert sorted(r["problem_id"] for r in pairs) == sorted({problem_of[s] for s in solutions})
    assert all(problem_of[r["chosen_solution_id"]] == problem_of[r["rejected_solution_id"]] == r["problem_id"]
               for r in pairs)


def test_processbench_export_of_known_labels_imports_back_exactly(prefect_harness, tmp_path):
    from flows.import_labels import import_labels
    from tasks.config import ImportConfig

    db, solutions = seeded(tmp_path)
    export(config=ExportConfig(db=db, out=tmp_path / "pb", format="processbench", outputs=("jsonl",)))
    imported = tmp_path / "imported.duckdb"
    [path] = sorted((tmp_path / "pb" / "data").glob("*.jsonl"))
    import_labels(config=ImportConfig(db=imported, path=str(path), format="processbench"))
    with Store(imported, read_only=True) as store:
        rows = store.query("SELECT s.correct, list(l.he ORDER BY st.step_index) FROM steps st "
                           "JOIN solutions s USING (solution_id) LEFT JOIN imported_step_labels l "
                           "USING (solution_id, step_index) GROUP BY st.solution_id, s.correct").rows
    # A right solution: every step correct. A wrong one: its first step wrong, the rest unlabelled.
    expected = sorted((correct, [True] * n if correct else [False] + [None] * (n - 1))
                      for correct, n in solutions.values())
    assert sorted(rows) == expected


def test_provenance_of_chunks_merges_into_the_whole_exports():
    from tasks.interchange.export import merge_provenance

    def row(kind, model, run_ids, solutions, strategy=None):
        return {"kind": kind, "strategy": strategy, "model": model, "params": "{}", "budget": None,
                "run_ids": run_ids, "solutions": solutions}

    first = [row("generation", "g", ["r1"], 3), row("rollouts", "c", ["r1", "r2"], 3, "math_shepherd")]
    second = [row("generation", "g", ["r2"], 2), row("labelling", "c", ["r3"], 1, "naive")]
    merged = merge_provenance([*first, *second])
    # Chunks hold disjoint solutions: counts add up; run ids are the union, sorted.
    assert [(r["kind"], r["run_ids"], r["solutions"]) for r in merged] == [
        ("generation", ["r1", "r2"], 5), ("labelling", ["r3"], 1), ("rollouts", ["r1", "r2"], 3)]
