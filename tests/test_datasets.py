"""Dataset loaders: bundled files, synthetic arith, user JSONL/Parquet files and `datasets` sources.

Real files only (the bundled data/ folder, files written to tmp_path); no network: the hub test
runs with HF_HUB_OFFLINE=1.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.arith import ArithDifficulty, generate_problem
from tasks.datasets import (
    ARITH_TEST_SEED_OFFSET,
    ARITH_VALIDATION_SEED_OFFSET,
    BUILTIN_DATASETS,
    DatasetError,
    LoadResult,
    ProblemRecord,
    QuarantineRecord,
    data_dir,
    load_arith,
    load_dataset_spec,
    load_gsm8k,
    load_hf,
    load_jsonl,
    load_math500,
    load_math_train,
    problem_id,
)


def _write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _by_line(result: LoadResult) -> dict[int, QuarantineRecord]:
    return {q.line: q for q in result.quarantined}


# --- bundled data -------------------------------------------------------------------------------


def test_builtin_names_and_data_dir():
    assert BUILTIN_DATASETS == ("gsm8k", "math500", "math", "arith")
    assert (data_dir() / "gsm8k" / "test.jsonl").is_file()


def test_gsm8k_test_counts_and_first_gold():
    result = load_gsm8k("test")
    assert len(result.problems) == 1319
    assert result.quarantined == []
    first = result.problems[0]
    assert first.gold_answer == "18"
    assert first.question.startswith("Janet\u2019s ducks lay 16 eggs per day.")
    assert (first.dataset, first.split, first.source_row, first.answer_kind) == ("gsm8k", "test", 1, "numeric")
    assert first.source == str(data_dir() / "gsm8k" / "test.jsonl")
    assert first.problem_id == problem_id("gsm8k", "test", first.question, "18")
    expected = hashlib.sha256(f"gsm8k\x1ftest\x1f{first.question}\x1f18".encode()).hexdigest()[:24]
    assert first.problem_id == expected and len(first.problem_id) == 24
    # every gold is a plain number without thousands separators
    assert all("," not in p.gold_answer and isinstance(float(p.gold_answer), float) for p in result.problems)
    assert [p.source_row for p in result.problems] == list(range(1, 1320))


def test_gsm8k_train_counts():
    result = load_gsm8k("train")
    assert len(result.problems) == 7473
    assert result.quarantined == []
    assert result.problems[0].gold_answer == "72"
    assert len({p.problem_id for p in result.problems}) == 7473


def test_math500_counts_and_meta():
    result = load_math500()
    assert len(result.problems) == 500
    assert result.quarantined == []
    first = result.problems[0]
    assert first.gold_answer == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert (first.dataset, first.split, first.answer_kind) == ("math500", "test", "math")
    assert first.meta == {"subject": "Precalculus", "level": 2, "unique_id": "test/precalculus/807.json"}
    json.dumps([p.meta for p in result.problems])


def test_math_train_counts_and_empty_answers_quarantined():
    result = load_math_train()
    assert len(result.problems) == 7498
    assert len(result.quarantined) == 2
    assert result.problems[0].gold_answer == "\\frac{1}{4}"
    assert (result.problems[0].dataset, result.problems[0].split) == ("math", "train")
    for q in result.quarantined:
        assert "final_answer" in q.reason and "empty" in q.reason
        assert q.source.endswith("extracted_problems_and_answers.json")
        assert json.loads(q.raw)["final_answer"] == ""
    items = json.loads((data_dir() / "math_train" / "extracted_problems_and_answers.json").read_text())
    for q in result.quarantined:  # line is the 1-based list index
        assert items[q.line - 1]["final_answer"] == ""


def test_data_dir_override(tmp_path, monkeypatch):
    (tmp_path / "gsm8k").mkdir()
    _write_lines(tmp_path / "gsm8k" / "test.jsonl", [json.dumps({"question": "1+1?", "answer": "1+1=2\n#### 2"})])
    monkeypatch.setenv("PRMF_DATA_DIR", str(tmp_path))
    assert data_dir() == tmp_path
    result = load_gsm8k()
    assert [(p.question, p.gold_answer) for p in result.problems] == [("1+1?", "2")]


def test_missing_file_names_the_path(tmp_path):
    missing = tmp_path / "nope" / "test.jsonl"
    with pytest.raises(DatasetError, match="file not found") as err:
        load_gsm8k("test", path=missing)
    assert str(missing) in str(err.value)
    with pytest.raises(DatasetError, match="nope.jsonl"):
        load_jsonl(tmp_path / "nope.jsonl", "mine")
    with pytest.raises(DatasetError, match="nope.parquet"):
        load_dataset_spec("jsonl", path=tmp_path / "nope.parquet", dataset_name="mine")


# --- arith --------------------------------------------------------------------------------------


def test_arith_is_deterministic_and_matches_generator():
    a = load_arith(50, seed=7)
    b = load_arith(50, seed=7)
    assert a == b
    assert len(a.problems) == 50 and a.quarantined == []
    p = a.problems[3]
    gen = generate_problem(3, 7)
    assert (p.question, p.gold_answer, p.source_row) == (gen.question, str(gen.answer), 3)
    assert (p.dataset, p.split, p.source, p.answer_kind) == ("arith", "train", "arith:seed=7", "numeric")
    assert p.meta["gold_values"] == list(gen.gold_values)
    assert p.meta["given_numbers"] == list(gen.given_numbers)
    assert p.meta["operations"] == [list(op) for op in gen.operations]
    assert (p.meta["seed"], p.meta["index"]) == (7, 3)
    json.dumps([q.meta for q in a.problems])
    assert [p.question for p in load_arith(50, seed=8).problems] != [p.question for p in a.problems]


def test_arith_start_and_difficulty():
    hard = ArithDifficulty(min_ops=3, max_ops=4, ops="+-*")
    window = load_arith(5, seed=1, difficulty=hard, start=10)
    assert [p.source_row for p in window.problems] == [10, 11, 12, 13, 14]
    assert window.problems == load_arith(15, seed=1, difficulty=hard).problems[10:]
    assert all(3 <= len(p.meta["operations"]) <= 4 for p in window.problems)
    with pytest.raises(DatasetError, match="min_ops"):
        load_arith(1, difficulty=ArithDifficulty(min_ops=3, max_ops=2))


def test_arith_test_split_uses_a_separate_seed_range():
    train = load_dataset_spec("arith", limit=300, seed=0)
    test = load_dataset_spec("arith", split="test", limit=300, seed=0)
    assert {p.split for p in train.problems} == {"train"} and {p.split for p in test.problems} == {"test"}
    assert {p.meta["seed"] for p in test.problems} == {ARITH_TEST_SEED_OFFSET}
    assert test.problems[0].source == f"arith:seed={ARITH_TEST_SEED_OFFSET}"
    assert test.problems == load_arith(300, seed=0, split="test").problems
    assert test.problems[5].question == generate_problem(5, ARITH_TEST_SEED_OFFSET).question
    # the (seed, index) streams never meet, and ids never collide
    train_keys = {(p.meta["seed"], p.meta["index"]) for p in train.problems}
    assert train_keys.isdisjoint({(p.meta["seed"], p.meta["index"]) for p in test.problems})
    assert {p.problem_id for p in train.problems}.isdisjoint({p.problem_id for p in test.problems})
    # texts differ almost always (the default story space is finite, so a rare identical story is possible)
    same_text = {p.question for p in train.problems} & {p.question for p in test.problems}
    assert len(same_text) <= 3
    # The validation split (promotion pools) is a third seed range, disjoint from both.
    validation = load_arith(300, seed=0, split="validation")
    assert {p.meta["seed"] for p in validation.problems} == {ARITH_VALIDATION_SEED_OFFSET}
    assert validation.problems[5].question == generate_problem(5, ARITH_VALIDATION_SEED_OFFSET).question
    ids = {p.problem_id for p in validation.problems}
    assert ids.isdisjoint({p.problem_id for p in train.problems} | {p.problem_id for p in test.problems})
    with pytest.raises(DatasetError, match="split"):
        load_arith(3, split="dev")


# --- user JSONL ---------------------------------------------------------------------------------


def test_jsonl_good_rows_load_and_bad_rows_are_quarantined(tmp_path):
    good1 = {"question": "  What is 2+3?  ", "answer": "2+3=5\n#### 5"}
    good2 = {"question": "Big number?", "answer": "It is\n#### 1,234"}
    good3 = {"question": "Negative?", "answer": "#### -7.5"}
    lines = [
        json.dumps(good1),  # 1
        '{"question": "broken" "answer": "#### 1"}',  # 2 invalid JSON
        "",  # 3 blank: skipped silently
        json.dumps({"answer": "#### 3"}),  # 4 missing question
        json.dumps(good2),  # 5
        json.dumps({"question": "No marker", "answer": "the answer is 4"}),  # 6 no ####
        json.dumps({"question": "Words", "answer": "#### four"}),  # 7 not a number
        "   ",  # 8 blank
        json.dumps(good1),  # 9 duplicate of line 1
        json.dumps(["a", "list"]),  # 10 not an object
        json.dumps({"question": "", "answer": "#### 1"}),  # 11 empty question
        json.dumps({"question": 12, "answer": "#### 1"}),  # 12 non-string question
        json.dumps(good3),  # 13
    ]
    path = _write_lines(tmp_path / "mixed.jsonl", lines)
    result = load_jsonl(path, "mixed", split="test", answer_kind="numeric", gold_format="gsm8k")

    assert [(p.source_row, p.question, p.gold_answer) for p in result.problems] == [
        (1, "What is 2+3?", "5"),
        (5, "Big number?", "1234"),
        (13, "Negative?", "-7.5"),
    ]
    assert all(p.dataset == "mixed" and p.split == "test" and p.answer_kind == "numeric" for p in result.problems)
    assert all(p.source == str(path) for p in result.problems)

    bad = _by_line(result)
    assert sorted(bad) == [2, 4, 6, 7, 9, 10, 11, 12]
    assert bad[2].reason.startswith("invalid JSON:") and "delimiter" in bad[2].reason and "col" in bad[2].reason
    assert bad[2].raw == lines[1]
    assert bad[4].reason == "missing field 'question'"
    assert bad[6].reason == "unparseable gold answer: no '#### N' line"
    assert bad[7].reason.startswith("unparseable gold answer") and "four" in bad[7].reason
    assert bad[9].reason == "duplicate of line 1"
    assert "not a JSON object" in bad[10].reason
    assert bad[11].reason == "empty field 'question'"
    assert "not a string" in bad[12].reason
    assert all(q.source == str(path) for q in result.quarantined)


def test_jsonl_plain_gold_nested_fields_and_numeric_answers(tmp_path):
    lines = [
        json.dumps({"item": {"text": "Solve x+1=2."}, "sol": {"final": " 1 "}}),
        json.dumps({"item": {"text": "Area?"}, "sol": {"final": 12}}),  # numbers are accepted as answers
        json.dumps({"item": {"text": "Nothing"}, "sol": {}}),
        json.dumps({"item": {"text": "Null"}, "sol": {"final": None}}),
    ]
    path = _write_lines(tmp_path / "nested.jsonl", lines)
    result = load_jsonl(path, "nested", question_field="item.text", answer_field="sol.final")
    assert [(p.question, p.gold_answer, p.answer_kind) for p in result.problems] == [
        ("Solve x+1=2.", "1", "math"),
        ("Area?", "12", "math"),
    ]
    bad = _by_line(result)
    assert bad[3].reason == "missing field 'sol.final'"
    assert "null" in bad[4].reason


def test_jsonl_raw_is_truncated_and_bad_utf8_is_quarantined(tmp_path):
    path = tmp_path / "odd.jsonl"
    long_bad = '{"question": "' + "x" * 5000
    path.write_bytes(
        (json.dumps({"question": "ok?", "answer": "1"}) + "\n").encode()
        + long_bad.encode()
        + b"\n"
        + b'{"question": "\xff\xfe", "answer": "2"}\n'
    )
    result = load_jsonl(path, "odd")
    assert len(result.problems) == 1
    bad = _by_line(result)
    assert len(bad[2].raw) == 2000 and bad[2].reason.startswith("invalid JSON")
    assert "UTF-8" in bad[3].reason


def test_bad_field_mapping_is_a_dataset_error(tmp_path):
    path = _write_lines(tmp_path / "q.jsonl", [json.dumps({"q": "a?", "a": "1"}), json.dumps({"q": "b?", "a": "2"})])
    with pytest.raises(DatasetError, match=r"bad field mapping.*'question'.*fields seen: a, q"):
        load_jsonl(path, "q")
    assert len(load_jsonl(path, "q", question_field="q", answer_field="a").problems) == 2
    with pytest.raises(DatasetError, match="bad field mapping"):
        load_jsonl(path, "q", question_field="", answer_field="a")
    with pytest.raises(DatasetError, match="answer_kind"):
        load_jsonl(path, "q", question_field="q", answer_field="a", answer_kind="fuzzy")
    with pytest.raises(DatasetError, match="gold_format"):
        load_jsonl(path, "q", question_field="q", answer_field="a", gold_format="boxed")  # type: ignore[arg-type]


def test_json_list_file(tmp_path):
    path = tmp_path / "list.json"
    path.write_text(json.dumps([{"problem": "p1", "final_answer": "a"}, {"problem": "p2"}, "junk"]))
    result = load_jsonl(path, "lst", question_field="problem", answer_field="final_answer")
    assert [(p.source_row, p.question) for p in result.problems] == [(1, "p1")]
    assert [(q.line, q.reason) for q in result.quarantined] == [
        (2, "missing field 'final_answer'"),
        (3, "not a JSON object (got str)"),
    ]


# --- parquet ------------------------------------------------------------------------------------


def _write_parquet(path: Path) -> Path:
    table = pa.table(
        {
            "meta": [{"q": "What is 6*7?", "tag": "a"}, {"q": None, "tag": "b"}, {"q": "  Half of 9?  ", "tag": "c"}],
            "gold": ["42", "1", "4.5"],
        }
    )
    pq.write_table(table, path)
    return path


def test_parquet_with_nested_field_mapping(tmp_path):
    path = _write_parquet(tmp_path / "rows.parquet")
    result = load_jsonl(path, "pq", question_field="meta.q", answer_field="gold", split="dev", answer_kind="numeric")
    assert [(p.source_row, p.question, p.gold_answer) for p in result.problems] == [
        (1, "What is 6*7?", "42"),
        (3, "Half of 9?", "4.5"),
    ]
    assert all(p.split == "dev" and p.answer_kind == "numeric" for p in result.problems)
    assert [(q.line, q.reason) for q in result.quarantined] == [(2, "field 'meta.q' is null")]
    assert json.loads(result.quarantined[0].raw)["meta"]["tag"] == "b"
    with pytest.raises(DatasetError, match=r"bad field mapping.*'question'.*columns: meta, gold"):
        load_jsonl(path, "pq")


# --- datasets (hf) ------------------------------------------------------------------------------


def test_load_hf_local_files(tmp_path):
    cache = tmp_path / "hf-cache"
    jsonl = _write_lines(
        tmp_path / "hf.jsonl",
        [
            json.dumps({"question": "q1?", "answer": "#### 1"}),
            json.dumps({"question": "q2?", "answer": "no marker"}),
            json.dumps({"question": "q3?", "answer": "#### 3"}),
        ],
    )
    result = load_hf(str(jsonl), "local", split="test", gold_format="gsm8k", answer_kind="numeric", cache_dir=cache)
    assert [(p.source_row, p.gold_answer, p.split, p.source) for p in result.problems] == [
        (1, "1", "test", f"hf:{jsonl}"),
        (3, "3", "test", f"hf:{jsonl}"),
    ]
    assert [(q.line, q.reason) for q in result.quarantined] == [(2, "unparseable gold answer: no '#### N' line")]

    parquet = _write_parquet(tmp_path / "rows.parquet")
    via_hf = load_hf(str(parquet), "pq", question_field="meta.q", answer_field="gold", cache_dir=cache)
    via_file = load_jsonl(parquet, "pq", question_field="meta.q", answer_field="gold")
    assert [(p.problem_id, p.source_row) for p in via_hf.problems] == [
        (p.problem_id, p.source_row) for p in via_file.problems
    ]
    with pytest.raises(DatasetError, match="bad field mapping"):
        load_hf(str(parquet), "pq", question_field="meta.q", answer_field="nope", cache_dir=cache)

    spec = load_dataset_spec("hf", name=str(jsonl), dataset_name="local", gold_format="gsm8k", limit=1, cache_dir=cache)
    assert [p.question for p in spec.problems] == ["q1?"]


def test_load_hf_save_to_disk_folder(tmp_path):
    import datasets

    folder = tmp_path / "saved"
    datasets.Dataset.from_dict({"problem": ["p?", "r?"], "solution": ["x", ""]}).save_to_disk(str(folder))
    result = load_hf(str(folder), "saved", question_field="problem", answer_field="solution")
    assert [p.question for p in result.problems] == ["p?"]
    assert [(q.line, q.reason) for q in result.quarantined] == [(2, "empty field 'solution'")]


def test_load_hf_unknown_hub_id_is_a_clear_error_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.monotonic()
    with pytest.raises(DatasetError) as err:
        load_hf("prmf-no-such-org/no-such-dataset", "x", cache_dir=tmp_path / "hf-cache")
    assert time.monotonic() - started < 10
    message = str(err.value)
    assert "prmf-no-such-org/no-such-dataset" in message and "cannot load" in message
    assert "HF_HUB_OFFLINE" in message
    with pytest.raises(DatasetError, match="file not found"):
        load_hf(str(tmp_path / "missing.jsonl"), "x")


# --- dispatcher ---------------------------------------------------------------------------------


def test_dataset_spec_defaults_and_limit():
    gsm = load_dataset_spec("gsm8k", limit=5)
    assert [p.source_row for p in gsm.problems] == [1, 2, 3, 4, 5]
    assert gsm.problems[0].split == "test" and gsm.problems[0].gold_answer == "18"
    assert load_dataset_spec("gsm8k", split="train", limit=1).problems[0].gold_answer == "72"
    assert len(load_dataset_spec("math500", limit=3).problems) == 3
    assert load_dataset_spec("math", limit=2).problems[0].split == "train"
    assert load_dataset_spec("gsm8k", limit=0).problems == []
    arith = load_dataset_spec("arith", limit=4, seed=3, start=2, difficulty={"max_ops": 3})
    assert [p.meta["index"] for p in arith.problems] == [2, 3, 4, 5]


def test_dataset_spec_limit_reports_quarantine_of_scanned_rows(tmp_path):
    lines = [
        "not json",  # 1
        json.dumps({"question": "a?", "answer": "1"}),  # 2
        json.dumps({"question": "b?"}),  # 3
        json.dumps({"question": "c?", "answer": "3"}),  # 4
        "also not json",  # 5 (after the limit is reached: not scanned)
        json.dumps({"question": "d?", "answer": "4"}),  # 6
    ]
    path = _write_lines(tmp_path / "lim.jsonl", lines)
    result = load_dataset_spec("jsonl", limit=2, path=path, dataset_name="lim")
    assert [p.question for p in result.problems] == ["a?", "c?"]
    assert [q.line for q in result.quarantined] == [1, 3]
    full = load_dataset_spec("jsonl", path=path, dataset_name="lim")
    assert len(full.problems) == 3 and [q.line for q in full.quarantined] == [1, 3, 5]


def test_dataset_spec_errors(tmp_path):
    with pytest.raises(DatasetError, match="unknown dataset 'gsm9k'"):
        load_dataset_spec("gsm9k")
    with pytest.raises(DatasetError, match="math500.*test"):
        load_dataset_spec("math500", split="train")
    with pytest.raises(DatasetError, match="math.*train"):
        load_dataset_spec("math", split="test")
    with pytest.raises(DatasetError, match="gsm8k.*split 'dev'"):
        load_dataset_spec("gsm8k", split="dev")
    with pytest.raises(DatasetError, match="limit"):
        load_dataset_spec("arith")
    with pytest.raises(DatasetError, match="unexpected option.*colour"):
        load_dataset_spec("gsm8k", colour="red")
    with pytest.raises(DatasetError, match="dataset_name"):
        load_dataset_spec("jsonl", path=tmp_path / "x.jsonl")
    with pytest.raises(DatasetError, match="path"):
        load_dataset_spec("jsonl", dataset_name="x")
    with pytest.raises(DatasetError, match="difficulty"):
        load_dataset_spec("arith", limit=1, difficulty={"max_ops": 99})
    with pytest.raises(DatasetError, match="limit"):
        load_dataset_spec("gsm8k", limit=-1)


def test_records_are_frozen():
    record = load_arith(1).problems[0]
    assert isinstance(record, ProblemRecord)
    with pytest.raises(AttributeError):
        record.question = "changed"  # type: ignore[misc]
    assert len({record, load_arith(1).problems[0]}) == 1  # hashable despite the meta dict
