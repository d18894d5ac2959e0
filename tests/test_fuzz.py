"""Property-based fuzz tests (hypothesis) for the dataset loaders and the answer grading.

Real files in a temporary folder, real math-verify in real pebble worker processes; no mocks.
Each example is bounded by hypothesis's own ``deadline`` setting (no timed assertions), and the
example database is off (``database=None``): no failing examples are stored between runs (hypothesis
still keeps its own caches in ``.hypothesis/``, which carries its own ``.gitignore``).

Loader oracle: every generated line is classified independently of the loader (decode as UTF-8,
strip, ``json.loads``, check the mapped fields as the module docstring describes), and the
expected LoadResult (problems, quarantine with 1-based lines, duplicates, ``limit``, the
"bad field mapping" DatasetError) is rebuilt from those classifications. The generator also
tags what it *meant* each line to be, and the tags are checked against the outcome, so an oracle
that drifted towards the implementation would still be caught on the rows that were built valid
or built bad.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, event, example, given, settings
from hypothesis import strategies as st

from tasks.datasets import MAX_RAW_CHARS, DatasetError, load_gsm8k, load_jsonl
from tasks.grading import (
    EXTRACT_WINDOW_CHARS,
    GradeResult,
    Grader,
    extract_answer,
    grade_numeric,
    parse_number,
)

FUZZ = settings(
    max_examples=60,
    deadline=timedelta(seconds=5),
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FUZZ_TEXT = settings(FUZZ, max_examples=100)

OK_TRUE = GradeResult(correct=True, status="ok")
OK_FALSE = GradeResult(correct=False, status="ok")
STATUSES = {"ok", "no_answer", "timeout", "error"}

# ==============================================================================================
# Dataset loaders
# ==============================================================================================

# Any character except the line separator the loader splits on (b"\n") and lone surrogates.
LINE_CHARS = st.characters(exclude_categories=("Cs",), exclude_characters="\n")
ANY_CHARS = st.characters(exclude_categories=("Cs",))
_GSM8K_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)")  # "a number" for a GSM8K gold

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(alphabet=ANY_CHARS, max_size=12)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
NON_OBJECT_JSON = JSON_SCALARS | st.lists(JSON_VALUES, max_size=3)


def _nonblank(s: str) -> bool:
    return bool(s.strip())


QUESTIONS = st.one_of(
    st.text(alphabet=ANY_CHARS, min_size=1, max_size=30).filter(_nonblank),  # \n, NUL, U+2028 ...
    st.sampled_from(["0", "1", "x", "What is 2+2?"]),  # small pool: duplicates happen naturally
    st.builds(  # huge: up to ~100k characters
        lambda frag, n: frag * n,
        st.text(alphabet=ANY_CHARS, min_size=1, max_size=4).filter(_nonblank),
        st.integers(min_value=500, max_value=25_000),
    ),
)
# A blank value: strip() leaves nothing (U+3000 and U+2028 are whitespace to Python too).
BLANKS = st.sampled_from(["", " ", "\t", "\r\n", " \u3000 ", "\u2028", "\x0b\x0c"])


@st.composite
def gsm8k_answers(draw) -> str:
    """A GSM8K-style answer ``<rationale>\\n#### <number>`` (the number may have commas)."""
    rationale = draw(st.text(alphabet=ANY_CHARS, max_size=30))
    if draw(st.booleans()):  # an earlier "#### ..." line: only the last one counts
        rationale = draw(st.sampled_from(["#### 7\n", "#### x\n", "####\n"])) + rationale
    kind = draw(st.sampled_from(["int", "commas", "decimal", "signed"]))
    if kind == "int":
        number = str(draw(st.integers(min_value=0, max_value=10**12)))
    elif kind == "commas":
        number = f"{draw(st.integers(min_value=-(10**12), max_value=10**12)):,}"
    elif kind == "decimal":
        whole = draw(st.integers(min_value=0, max_value=10**6))
        frac = draw(st.text(alphabet="0123456789", max_size=4))
        number = draw(st.sampled_from([f"{whole}.{frac}", f".{frac or '5'}"]))
    else:
        number = draw(st.sampled_from(["+", "-"])) + str(draw(st.integers(min_value=0, max_value=999)))
    trailing = draw(st.sampled_from(["", " ", "\n"]))
    return f"{rationale}\n#### {number}{trailing}"


def plain_answers() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.text(alphabet=ANY_CHARS, min_size=1, max_size=20).filter(_nonblank),
        st.integers(min_value=-(10**40), max_value=10**40),
        st.floats(allow_nan=False, allow_infinity=False),
    )


def good_answers(gold_format: str) -> st.SearchStrategy[Any]:
    return gsm8k_answers() if gold_format == "gsm8k" else plain_answers()


def _dumps(draw, obj: Any) -> str:
    """Serialize with a random style (ASCII escapes or raw unicode, compact or spaced)."""
    ensure_ascii = draw(st.booleans())
    separators = draw(st.sampled_from([None, (",", ":"), (" , ", " : ")]))
    return json.dumps(obj, ensure_ascii=ensure_ascii, separators=separators, allow_nan=True)


def _shuffled(draw, items: dict) -> dict:
    keys = draw(st.permutations(list(items)))
    return {k: items[k] for k in keys}


def _extras(draw, qf: str, af: str) -> dict:
    return draw(st.dictionaries(st.text(max_size=8).filter(lambda k: k not in (qf, af)), JSON_VALUES, max_size=2))


def _pad(draw, text: str) -> str:
    """Surrounding whitespace the loader must strip (the line itself, not the JSON strings)."""
    left = draw(st.sampled_from(["", " ", "\t", "\x1f", "\u3000"]))
    right = draw(st.sampled_from(["", " ", "\t", "\r", "\x1c"]))
    return left + text + right


@st.composite
def jsonl_rows(draw, qf: str, af: str, gold_format: str) -> list[tuple[bytes, str]]:
    """Lines (bytes without the line terminator) tagged with what they were built to be:

    ``valid`` (a good row, unless it repeats an earlier one by chance), ``dup`` (re-serialises an
    earlier valid row: must be quarantined as a duplicate), ``bad`` (must be quarantined, not as a
    duplicate), ``blank`` (must be skipped) or ``any`` (arbitrary: the oracle alone decides).
    """
    answers = good_answers(gold_format)
    valid_rows: list[tuple[str, Any]] = []
    rows: list[tuple[bytes, str]] = []
    n_rows = draw(st.integers(min_value=0, max_value=20))
    kinds = [
        "valid", "valid", "valid", "dup", "missing_field", "wrong_type", "blank_field",
        "bad_gold", "invalid_json", "raw_nul", "non_object", "invalid_utf8", "huge_garbage",
        "nested", "too_deep", "huge_int", "blank_line", "any_text",
    ]  # fmt: skip
    for _ in range(n_rows):
        kind = draw(st.sampled_from(kinds))
        if kind == "dup" and not valid_rows:
            kind = "valid"
        if kind == "bad_gold" and gold_format != "gsm8k":
            kind = "any_text"

        if kind == "valid":
            question, answer = draw(QUESTIONS), draw(answers)
            valid_rows.append((question, answer))
            obj = _shuffled(draw, {qf: question, af: answer, **_extras(draw, qf, af)})
            rows.append((_pad(draw, _dumps(draw, obj)).encode(), "valid"))
        elif kind == "dup":
            question, answer = draw(st.sampled_from(valid_rows))
            # Same problem, written differently: padding inside the question, another numeric type.
            question = draw(st.sampled_from(["", " ", "\n"])) + question + draw(st.sampled_from(["", "\t", " "]))
            if isinstance(answer, int) and not isinstance(answer, bool):
                variants = [answer, str(answer)] + ([float(answer)] if abs(answer) < 2**53 else [])
                answer = draw(st.sampled_from(variants))
            elif isinstance(answer, float) and answer.is_integer() and abs(answer) < 2**53:
                answer = draw(st.sampled_from([answer, int(answer)]))
            elif isinstance(answer, str):
                answer = answer + draw(st.sampled_from(["", " ", "\n"]))
            obj = _shuffled(draw, {qf: question, af: answer, **_extras(draw, qf, af)})
            rows.append((_pad(draw, _dumps(draw, obj)).encode(), "dup"))
        elif kind == "missing_field":
            present = draw(st.sampled_from([qf, af]))
            value = draw(QUESTIONS) if present == qf else draw(answers)
            obj = {present: value, **_extras(draw, qf, af)}
            rows.append((_dumps(draw, obj).encode(), "bad"))
        elif kind == "wrong_type":
            which = draw(st.sampled_from(["q", "a"]))
            containers = st.lists(JSON_SCALARS, max_size=2) | st.dictionaries(st.text(max_size=3), JSON_SCALARS)
            if which == "q":  # a question must be a string: numbers are not accepted either
                wrong = draw(st.none() | st.booleans() | st.integers() | st.floats() | containers)
                obj = {qf: wrong, af: draw(answers)}
            else:  # an answer may be a finite number, never a bool / null / list / object / NaN / inf
                wrong = draw(st.none() | st.booleans() | st.sampled_from([math.nan, math.inf, -math.inf]) | containers)
                obj = {qf: draw(QUESTIONS), af: wrong}
            rows.append((_dumps(draw, _shuffled(draw, obj)).encode(), "bad"))
        elif kind == "blank_field":
            if draw(st.booleans()):
                obj = {qf: draw(BLANKS), af: draw(answers)}
            else:
                obj = {qf: draw(QUESTIONS), af: draw(BLANKS)}
            rows.append((_dumps(draw, _shuffled(draw, obj)).encode(), "bad"))
        elif kind == "bad_gold":  # gsm8k format only: no "####", nothing after it, or not a number
            tail = draw(st.sampled_from(["", "   ", "abc", "1/2", "1e5", "12 apples", "--3", "$5", "1.2.3"]))
            answer = draw(st.sampled_from([f"so {tail}", f"steps\n#### {tail}", f"#### 4\n#### {tail}"]))
            rows.append((_dumps(draw, {qf: draw(QUESTIONS), af: answer}).encode(), "bad"))
        elif kind == "invalid_json":
            good = json.dumps({qf: "q", af: "1", **_extras(draw, qf, af)})
            text = draw(
                st.one_of(
                    st.just(good[:-1]),  # unclosed object
                    st.just(good[:-1] + ",}"),  # trailing comma
                    st.just(good.replace('"', "'")),  # single quotes
                    st.builds(lambda t: "#" + t, st.text(alphabet=LINE_CHARS, max_size=30)),
                    st.builds(lambda t: "{" + t, st.text(alphabet="abc:,[ ", max_size=10)),
                    st.just("{question: 1, answer: 2}"),
                    st.just(good + " " + good),  # two objects on one line: extra data
                )
            )
            rows.append((text.encode(), "bad"))
        elif kind == "raw_nul":  # a raw control character inside a JSON string is invalid JSON
            ctrl = draw(st.sampled_from(["\x00", "\x01", "\x1f", "\t"]))
            text = '{"%s": "a%sb", "%s": "1"}' % (qf, ctrl, af)
            rows.append((text.encode(), "bad"))
        elif kind == "non_object":
            rows.append((_dumps(draw, draw(NON_OBJECT_JSON)).encode(), "bad"))
        elif kind == "invalid_utf8":
            before = draw(st.binary(max_size=20)).replace(b"\n", b"")
            bad = draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf"]))
            after = draw(st.binary(max_size=20)).replace(b"\n", b"")
            rows.append((before + bad + after, "bad"))
        elif kind == "huge_garbage":
            frag = draw(st.text(alphabet=LINE_CHARS, min_size=1, max_size=5))
            rows.append((("#" + frag * draw(st.integers(min_value=400, max_value=20_000))).encode(), "bad"))
        elif kind == "nested":  # nesting well inside the JSON decoder's recursion limit
            depth = draw(st.integers(min_value=1, max_value=150))
            text = draw(
                st.sampled_from(
                    ["[" * depth + "]" * depth, "[" * depth, '{"k":' * depth + "1" + "}" * depth, "{" * depth]
                )
            )
            rows.append((text.encode(), "bad"))
        elif kind == "too_deep":  # far past the JSON decoder's recursion limit
            depth = draw(st.integers(min_value=5_000, max_value=50_000))
            text = draw(st.sampled_from(["[" * depth, "[" * depth + "]" * depth, '{"k":' * depth + "1" + "}" * depth]))
            rows.append((text.encode(), "bad"))
        elif kind == "huge_int":  # more digits than int() accepts (sys.get_int_max_str_digits())
            digits = "9" * draw(st.integers(min_value=4_400, max_value=20_000))
            text = draw(st.sampled_from([digits, "[%s]" % digits, '{"%s": "q", "%s": %s}' % (qf, af, digits)]))
            rows.append((text.encode(), "bad"))
        elif kind == "blank_line":
            blank = draw(st.sampled_from(["", " ", "\t\t", "\r", "\u3000", "\x0b\x0c\x1c", "\u2028 \x85"]))
            rows.append((blank.encode(), "blank"))
        else:  # any_text
            rows.append((draw(st.text(alphabet=LINE_CHARS, max_size=40)).encode(), "any"))
    return rows


@dataclass(frozen=True)
class Expected:
    """What the loader must do with one line."""

    skip: bool = False
    ok: bool = False
    raw: str = ""
    reason_prefix: str = ""  # for bad rows: the reason starts with this ...
    reason_field: str = ""  # ... or names this field
    is_object: bool = False
    has_question: bool = False
    has_answer: bool = False
    question: str = ""
    gold: str = ""


def _expect_line(data: bytes, lineno: int, qf: str, af: str, gold_format: str) -> Expected:
    """Independent classification of one line (``data`` includes its line terminator)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raw = data.decode("utf-8", errors="replace").rstrip("\r\n")
        return Expected(raw=raw[:MAX_RAW_CHARS], reason_prefix="invalid UTF-8")
    if lineno == 1:
        text = text.lstrip("\ufeff")  # a byte-order mark opening the file
    text = text.strip()
    if not text:
        return Expected(skip=True)
    raw = text[:MAX_RAW_CHARS]
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):  # JSONDecodeError, an int past the digit limit, deep nesting
        return Expected(raw=raw, reason_prefix="invalid JSON")
    if not isinstance(obj, dict):
        return Expected(raw=raw, reason_prefix="not a JSON object")
    base = dict(raw=raw, is_object=True, has_question=qf in obj, has_answer=af in obj)
    question = obj.get(qf)
    if not isinstance(question, str) or not question.strip():
        return Expected(**base, reason_field=qf)
    answer = obj.get(af)
    if isinstance(answer, bool) or answer is None:
        return Expected(**base, reason_field=af)
    if isinstance(answer, int):
        answer = str(answer)
    elif isinstance(answer, float):
        if not math.isfinite(answer):
            return Expected(**base, reason_field=af)
        answer = str(int(answer)) if answer.is_integer() else repr(answer)
    if not isinstance(answer, str) or not answer.strip():
        return Expected(**base, reason_field=af)
    gold = answer.strip()
    if gold_format == "gsm8k":
        tail = gold.rsplit("####", 1)[1].strip().replace(",", "") if "####" in gold else ""
        if not _GSM8K_NUMBER.fullmatch(tail):
            return Expected(**base, reason_prefix="unparseable gold answer")
        gold = tail
    return Expected(**base, ok=True, question=question.strip(), gold=gold)


def _problem_id(dataset: str, split: str, question: str, gold: str) -> str:
    """The documented content key: sha256(dataset \\x1f split \\x1f question \\x1f gold)[:24]."""
    return hashlib.sha256(f"{dataset}\x1f{split}\x1f{question}\x1f{gold}".encode()).hexdigest()[:24]


@dataclass
class Want:
    """The LoadResult a list of per-row expectations adds up to."""

    problems: list[tuple[int, str, str]]  # (row, question, gold)
    quarantine: list[tuple[int, Expected, str]]  # (row, expectation, "duplicate of line N" or "")
    missing_field: str | None  # set when the load must fail with "bad field mapping"


def _want(expected: list[Expected], qf: str, af: str, limit: int | None) -> Want:
    """First ``limit`` good rows in file order; later copies quarantined as duplicates of the first;
    the bad rows scanned until the limit was reached; the mapping error when objects were seen,
    none loaded, and the question or the answer field occurs in none of them."""
    want_problems: list[tuple[int, str, str]] = []
    want_quarantine: list[tuple[int, Expected, str]] = []  # (line, expectation, duplicate reason)
    first_line: dict[tuple[str, str], int] = {}
    objects = 0
    has_q = has_a = False
    for lineno, exp in enumerate(expected, start=1):
        if exp.skip:
            continue
        if limit is not None and len(want_problems) >= limit:
            break
        if exp.is_object:
            objects += 1
            has_q, has_a = has_q or exp.has_question, has_a or exp.has_answer
        if not exp.ok:
            want_quarantine.append((lineno, exp, ""))
        elif (exp.question, exp.gold) in first_line:
            want_quarantine.append((lineno, exp, f"duplicate of line {first_line[exp.question, exp.gold]}"))
        else:
            first_line[exp.question, exp.gold] = lineno
            want_problems.append((lineno, exp.question, exp.gold))
    missing = None
    if objects and not want_problems and not (has_q and has_a):
        missing = qf if not has_q else af
    return Want(want_problems, want_quarantine, missing)


def _assert_reason(reason: str, exp: Expected, dup_reason: str) -> None:
    """A non-empty reason of the right kind: the duplicate's first line, the row-level failure
    (invalid UTF-8 / invalid JSON / not an object / unparseable gold) or the field at fault."""
    assert reason.strip()
    if dup_reason:
        assert reason == dup_reason
    elif exp.reason_prefix:
        assert reason.startswith(exp.reason_prefix), (reason, exp.reason_prefix)
    else:
        assert repr(exp.reason_field) in reason and not reason.startswith("duplicate"), (reason, exp.reason_field)


def _check_load(
    call, path: Path, rows: list[tuple[bytes, str]], terminated: list[bytes], *,
    dataset: str, split: str, qf: str, af: str, answer_kind: str, gold_format: str, limit: int | None,
) -> None:  # fmt: skip
    expected = [_expect_line(term, i, qf, af, gold_format) for i, term in enumerate(terminated, start=1)]

    # What the generator meant must agree with the classification.
    for (_, tag), exp in zip(rows, expected):
        if tag == "blank":
            assert exp.skip
        elif tag in ("valid", "dup"):
            assert exp.ok, exp
        elif tag == "bad":
            assert not exp.ok and not exp.skip, exp

    want = _want(expected, qf, af, limit)
    want_problems, want_quarantine = want.problems, want.quarantine
    event(f"problems: {min(len(want_problems), 3)}+" if want_problems else "problems: none")
    event("duplicates" if any(dup for _, _, dup in want_quarantine) else "no duplicates")
    event("limit cut the scan" if limit is not None and len(want_problems) == limit else "whole file scanned")
    if want.missing_field is not None:
        event("DatasetError: bad field mapping")
        with pytest.raises(DatasetError, match="bad field mapping") as info:
            call()
        assert repr(want.missing_field) in str(info.value) and str(path) in str(info.value)
        return

    result = call()

    assert [(p.source_row, p.question, p.gold_answer) for p in result.problems] == want_problems
    for p in result.problems:
        assert p.dataset == dataset.strip() and p.split == split and p.answer_kind == answer_kind
        assert p.source == str(path) and p.meta == {}
        assert p.problem_id == _problem_id(dataset.strip(), split, p.question, p.gold_answer)
    assert len({p.problem_id for p in result.problems}) == len(result.problems)

    # Every bad non-blank scanned line is quarantined exactly once, in file order, with its line.
    assert [q.line for q in result.quarantined] == [line for line, _, _ in want_quarantine]
    for q, (line, exp, dup_reason) in zip(result.quarantined, want_quarantine):
        assert q.source == str(path)
        assert q.raw == exp.raw, (line, q.raw[:80], exp.raw[:80])
        assert len(q.raw) <= MAX_RAW_CHARS
        _assert_reason(q.reason, exp, dup_reason)

    # Tag cross-check: built-valid rows are loaded (or are chance duplicates), built-dups are dups.
    if limit is None:
        loaded = {p.source_row for p in result.problems}
        reasons = {q.line: q.reason for q in result.quarantined}
        for lineno, (_, tag) in enumerate(rows, start=1):
            if tag == "valid":
                assert lineno in loaded or reasons[lineno].startswith("duplicate of line "), lineno
            elif tag == "dup":
                assert reasons[lineno].startswith("duplicate of line "), (lineno, reasons.get(lineno))
            elif tag == "bad":
                assert lineno not in loaded and not reasons[lineno].startswith("duplicate")
            elif tag == "blank":
                assert lineno not in loaded and lineno not in reasons


def _assemble(draw, rows: list[tuple[bytes, str]]) -> tuple[bytes, list[bytes]]:
    """Join rows with \\n or \\r\\n (the last maybe unterminated, the file maybe BOM-prefixed);
    return the file bytes and each line's bytes including its terminator."""
    terminated = []
    for index, (data, _) in enumerate(rows):
        last = index == len(rows) - 1
        ending = draw(st.sampled_from([b"\n", b"\r\n"] + ([b""] if last else [])))
        terminated.append(data + ending)
    if terminated and draw(st.booleans()):
        terminated[0] = b"\xef\xbb\xbf" + terminated[0]
    return b"".join(terminated), terminated


FIELD_MAPPINGS = [("question", "answer"), ("problem", "solution"), ("q", "a")]


@FUZZ
@given(data=st.data())
def test_load_jsonl_fuzzed_files(data):
    # The fields the file was written with, and the mapping the loader is given (usually the same;
    # otherwise rows that would be good may match no field, the "bad field mapping" case).
    file_qf, file_af = data.draw(st.sampled_from(FIELD_MAPPINGS), label="file fields")
    same = data.draw(st.integers(0, 3), label="same mapping") > 0
    if same:
        qf, af = file_qf, file_af
    else:
        qf = data.draw(st.sampled_from([m[0] for m in FIELD_MAPPINGS]), label="question_field")
        af = data.draw(st.sampled_from([m[1] for m in FIELD_MAPPINGS]), label="answer_field")
    gold_format = data.draw(st.sampled_from(["plain", "gsm8k"]), label="gold_format")
    answer_kind = data.draw(st.sampled_from(["math", "numeric"]), label="answer_kind")
    split = data.draw(st.sampled_from(["train", "test", "dev"]), label="split")
    dataset = data.draw(st.text(min_size=1, max_size=10).filter(_nonblank), label="dataset")
    limit = data.draw(st.none() | st.integers(min_value=0, max_value=4), label="limit")
    rows = data.draw(jsonl_rows(file_qf, file_af, gold_format), label="rows")
    if (qf, af) != (file_qf, file_af):  # built-valid rows may now be anything; built-bad stay bad
        rows = [(line, "any" if tag in ("valid", "dup") else tag) for line, tag in rows]
    content, terminated = _assemble(data.draw, rows)

    with tempfile.TemporaryDirectory() as tmp:  # a fresh folder per example
        path = Path(tmp) / data.draw(st.sampled_from(["rows.jsonl", "ROWS.JSONL", "rows.txt"]), label="name")
        path.write_bytes(content)

        def call():
            return load_jsonl(
                path, dataset, question_field=qf, answer_field=af, split=split,
                answer_kind=answer_kind, gold_format=gold_format, limit=limit,
            )  # fmt: skip

        _check_load(
            call, path, rows, terminated, dataset=dataset, split=split, qf=qf, af=af,
            answer_kind=answer_kind, gold_format=gold_format, limit=limit,
        )  # fmt: skip


@FUZZ
@given(data=st.data())
def test_load_gsm8k_fuzzed_files(data):
    split = data.draw(st.sampled_from(["train", "test"]), label="split")
    rows = data.draw(jsonl_rows("question", "answer", "gsm8k"), label="rows")
    content, terminated = _assemble(data.draw, rows)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{split}.jsonl"
        path.write_bytes(content)
        _check_load(
            lambda: load_gsm8k(split, path), path, rows, terminated, dataset="gsm8k", split=split,
            qf="question", af="answer", answer_kind="numeric", gold_format="gsm8k", limit=None,
        )  # fmt: skip


@FUZZ
@given(
    items=st.lists(
        st.one_of(
            st.fixed_dictionaries({"question": QUESTIONS, "answer": plain_answers()}),
            NON_OBJECT_JSON,
            st.fixed_dictionaries({"answer": plain_answers()}),
            st.fixed_dictionaries({"question": st.none() | st.integers() | BLANKS, "answer": plain_answers()}),
            st.fixed_dictionaries({"question": QUESTIONS, "answer": st.none() | st.booleans() | BLANKS}),
        ),
        max_size=15,
    )
)
def test_load_jsonl_fuzzed_json_list(items):
    """A ``.json`` file holding one JSON list: items are numbered from 1, same rules per item."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rows.json"
        path.write_text(json.dumps(items, ensure_ascii=False, indent=1), encoding="utf-8")
        # The line oracle applies per item (an item is never blank and has no BOM: pass row 2).
        expected = [_expect_line(json.dumps(item).encode(), 2, "question", "answer", "plain") for item in items]
        want = _want(expected, "question", "answer", None)
        if want.missing_field is not None:
            with pytest.raises(DatasetError, match=f"bad field mapping: .* field '{want.missing_field}'"):
                load_jsonl(path, "fuzz")
            return
        result = load_jsonl(path, "fuzz")
    assert [(p.source_row, p.question, p.gold_answer) for p in result.problems] == want.problems
    assert [q.line for q in result.quarantined] == [index for index, _, _ in want.quarantine]
    for q, (index, exp, dup_reason) in zip(result.quarantined, want.quarantine):
        _assert_reason(q.reason, exp, dup_reason)
        if len(q.raw) < MAX_RAW_CHARS:  # the raw text is the item itself, as JSON
            assert json.dumps(json.loads(q.raw), sort_keys=True) == json.dumps(items[index - 1], sort_keys=True)
        else:
            assert len(q.raw) == MAX_RAW_CHARS


def test_wrong_field_mapping_is_a_dataset_error_even_among_garbage():
    """A mapping that matches no object at all is fatal; present-but-bad fields are per-row."""
    lines = [b'{"problem": "p", "solution": "1"}', b"\xff\xfe", b"[1, 2]", b"not json", b"", b'{"problem": "r"}']
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rows.jsonl"
        path.write_bytes(b"\n".join(lines))
        with pytest.raises(DatasetError, match=r"bad field mapping: question field 'question'"):
            load_jsonl(path, "fuzz")
        with pytest.raises(DatasetError, match=r"bad field mapping: answer field 'answer'"):
            load_jsonl(path, "fuzz", question_field="problem")
        result = load_jsonl(path, "fuzz", question_field="problem", answer_field="solution")
        assert [p.source_row for p in result.problems] == [1]
        assert [q.line for q in result.quarantined] == [2, 3, 4, 6]
        # Both fields present somewhere (here only as null): no DatasetError, every row quarantined.
        path.write_bytes(b"\n".join([*lines, b'{"question": "q", "answer": null}']))
        result = load_jsonl(path, "fuzz")
        assert result.problems == []
        assert [q.line for q in result.quarantined] == [1, 2, 3, 4, 6, 7]


# Found by fuzzing: json.loads raises ValueError / RecursionError, not JSONDecodeError, for these
# lines; they must be quarantined like any other bad row, not stop the load.
@pytest.mark.parametrize(
    "line",
    [
        '{"question": "q", "answer": ' + "1" * 4301 + "}",  # int > sys.get_int_max_str_digits()
        "9" * 5000,
        "[" * 100_000,  # RecursionError in the JSON decoder
        '{"a":' * 5000 + "1" + "}" * 5000,
    ],
    ids=["huge-int-answer", "huge-int-line", "deep-list", "deep-object"],
)
def test_json_decoder_errors_are_quarantined_not_fatal(line):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rows.jsonl"
        path.write_text('{"question": "ok", "answer": "1"}\n' + line + "\n", encoding="utf-8")
        result = load_jsonl(path, "fuzz")
        assert [p.source_row for p in result.problems] == [1]
        assert [q.line for q in result.quarantined] == [2]
        assert result.quarantined[0].reason.startswith("invalid JSON")
        # In a .json file holding one JSON list, the same value makes the whole file unreadable.
        listed = Path(tmp) / "rows.json"
        listed.write_text('[{"question": "ok", "answer": "1"}, ' + line + "]", encoding="utf-8")
        with pytest.raises(DatasetError, match="invalid JSON"):
            load_jsonl(listed, "fuzz")


# ==============================================================================================
# Answer extraction
# ==============================================================================================

LATEXISH = st.text(alphabet="\\{}$boxedfanswrANSWER#:. \n*()^_0123456789xfrac", max_size=200)
FRAGMENTS = st.sampled_from(
    [
        "\\boxed{", "\\fbox{", "{", "}", "}}", "\\boxed{1}", "\\frac{", "The answer is ", "Answer:",
        "####", " 42", ".", ". ", "\n", "$", "\\(", "\\)", "**", "x", "\\boxed {", "answer is: ",
    ]
)  # fmt: skip
# Up to ~100k characters built from repeated fragments (a runaway rollout).
HUGE_TEXTS = st.builds(
    lambda frags, n, tail: "".join(frags) * n + tail,
    st.lists(FRAGMENTS, min_size=1, max_size=6),
    st.integers(min_value=1, max_value=10_000),
    st.text(max_size=20),
).map(lambda s: s[:100_000])


@FUZZ_TEXT
@given(text=st.one_of(st.text(), LATEXISH, HUGE_TEXTS, st.lists(FRAGMENTS, max_size=40).map("".join)))
def test_extract_answer_is_total_and_derived_from_the_text(text):
    answer = extract_answer(text)
    window = text[-EXTRACT_WINDOW_CHARS:]
    if answer is None:
        return
    assert isinstance(answer, str) and answer
    assert answer == answer.strip()  # cleaned: no surrounding whitespace
    assert "$" not in answer  # dollar signs are markup, always removed
    # The answer is a piece of the searched window (with its "$" removed): nothing is invented.
    assert answer in window.replace("$", "")


@FUZZ_TEXT
@given(text=st.one_of(st.text(), LATEXISH, HUGE_TEXTS))
def test_extract_answer_has_no_fallback_without_a_marker(text):
    """No \\boxed/\\fbox, no "answer", no "####" in the window: no answer (no last-number guess)."""
    window = text[-EXTRACT_WINDOW_CHARS:]
    assume("\\" not in window and "answer" not in window.casefold() and "####" not in window)
    assert extract_answer(text) is None


# Box contents that cleaning leaves untouched: balanced braces, no $, no backslash, no surrounding
# whitespace, no leading "*", no trailing "." or "*".
BALANCED = st.recursive(
    st.text(alphabet="abcxyz0123456789+-=^_(),/ ", max_size=6),
    lambda inner: st.builds(lambda a, b, c: a + "{" + b + "}" + c, inner, inner, inner),
    max_leaves=10,
)
CLEAN_CONTENT = BALANCED.filter(
    lambda s: s and s == s.strip() and not s.startswith("*") and not s.endswith((".", "*")) and len(s) < 500
)


@FUZZ_TEXT
@given(
    prefix=st.one_of(st.text(max_size=300), LATEXISH, HUGE_TEXTS),
    content=CLEAN_CONTENT,
    box=st.sampled_from(["\\boxed{", "\\fbox{", "\\boxed  {"]),
    suffix=st.text(alphabet=st.characters(exclude_characters="\\"), max_size=300),
)
def test_extract_answer_last_complete_box_wins(prefix, content, box, suffix):
    """Whatever comes before (even unclosed boxes) and whatever follows without a backslash (even
    stray braces), the last complete box is the answer, nested braces intact."""
    text = prefix + box + content + "}" + suffix
    assert extract_answer(text) == content


@settings(FUZZ_TEXT, max_examples=40)  # each example scans up to ~570 unclosed boxes 3 times
@given(depth=st.integers(min_value=0, max_value=5000), fill=st.sampled_from(["7", "x+1", "\\frac{1}{2}"]))
def test_extract_answer_deep_nesting_and_unclosed_boxes(depth, fill):
    inner = "{" * depth + fill + "}" * depth
    text = "\\boxed{" + inner + "}"
    # Complete box inside the searched window: returned whole; cut off by the window: no answer.
    assert extract_answer(text) == (inner if len(text) <= EXTRACT_WINDOW_CHARS else None)
    # Unclosed boxes never count, however many there are; an earlier complete box still does.
    assert extract_answer("\\boxed{" * depth) is None
    assert extract_answer("\\boxed{" + "{" * depth + fill) is None
    early = "\\boxed{5}" + "\\boxed{" * depth
    assert extract_answer(early) == ("5" if len(early) <= EXTRACT_WINDOW_CHARS else None)


@FUZZ_TEXT
@given(
    noise=st.text(max_size=200).filter(lambda s: "\\" not in s and "answer" not in s.casefold() and "####" not in s),
    phrase=st.sampled_from(["The answer is ", "the final answer is: ", "Answer: ", "**Final Answer:** ", "ANSWER IS "]),
    value=st.from_regex(r"-?[0-9]{1,6}(\.[0-9]{1,3})?( apples)?", fullmatch=True),
    end=st.sampled_from(["", ".", ". Let me check.", "\nmore text", "$."]),
)
def test_extract_answer_phrase(noise, phrase, value, end):
    """With no box, the last "answer is X" phrase gives X (to the end of its line or sentence)."""
    assert extract_answer(noise + "\n" + phrase + value + end) == value


# ==============================================================================================
# Numeric parsing and grading
# ==============================================================================================


@FUZZ_TEXT
@given(text=st.one_of(st.text(), LATEXISH, st.from_regex(r"[-+$\\%.,0-9/{}fracdt ]{0,40}", fullmatch=True)))
def test_parse_number_is_total(text):
    value = parse_number(text)
    assert value is None or isinstance(value, Fraction)
    if len(text.strip()) > 200:
        assert value is None
    # grade_numeric: never raises for a numeric gold, is reflexive on anything that parses.
    if value is not None:
        assert grade_numeric(text, text) == OK_TRUE
        as_fraction = str(value.numerator) + ("" if value.denominator == 1 else f"/{value.denominator}")
        assert grade_numeric(text, as_fraction) == OK_TRUE
    else:
        with pytest.raises(ValueError):
            grade_numeric("1", text)


@FUZZ_TEXT
@given(
    digits=st.text(alphabet="0123456789", min_size=2, max_size=12),
    cut=st.integers(min_value=1, max_value=11),
    sign=st.sampled_from(["", "-", "+"]),
)
def test_parse_number_rejects_commas_that_are_not_thousands_separators(digits, cut, sign):
    cut = min(cut, len(digits) - 1)
    assume((len(digits) - cut) % 3 != 0)  # the group after the comma is not 3 digits: "1,2", "12,34"
    assert parse_number(sign + digits[:cut] + "," + digits[cut:]) is None
    grouped = f"{int(digits):,}"  # the same digits properly grouped do parse
    assert parse_number(sign + grouped) == int(sign + digits)


@FUZZ_TEXT
@given(n=st.integers(min_value=150, max_value=400), digit=st.sampled_from("123456789"))
def test_parse_number_refuses_overlong_numbers(n, digit):
    """Strings over 200 characters are not numbers it grades (and int() refuses > 4300 digits)."""
    assert parse_number(digit * n) == (int(digit * n) if n <= 200 else None)


@st.composite
def number_strings(draw) -> tuple[str, Fraction]:
    """A number written in one of the accepted formats, with its exact value."""
    kind = draw(st.sampled_from(["int", "thousands", "decimal", "slash", "frac", "frac_short", "money", "percent"]))
    if kind == "int":
        n = draw(st.integers(min_value=-(10**60), max_value=10**60))
        text, value = draw(st.sampled_from([str(n), f"+{n}" if n >= 0 else str(n)])), Fraction(n)
    elif kind == "thousands":
        n = draw(st.integers(min_value=-(10**15), max_value=10**15))
        text, value = f"{n:,}", Fraction(n)
    elif kind == "decimal":
        places = draw(st.integers(0, 6))
        d = draw(st.decimals(min_value=-(10**9), max_value=10**9, allow_nan=False, allow_infinity=False, places=places))
        text, value = format(d, "f"), Fraction(d)
        if "." in text and draw(st.booleans()):  # "18.50" -> "18.5"; "18." stays 18
            text = text.rstrip("0")
        if text.startswith("0.") and draw(st.booleans()):
            text = text[1:]  # ".5"
    elif kind == "slash":
        p, q = draw(st.integers(-(10**9), 10**9)), draw(st.integers(1, 10**9))
        text, value = draw(st.sampled_from([f"{p}/{q}", f"{p} / {q}"])), Fraction(p, q)
    elif kind == "frac":
        p, q = draw(st.integers(-(10**9), 10**9)), draw(st.integers(1, 10**9))
        cmd = draw(st.sampled_from(["frac", "dfrac", "tfrac"]))
        sign = draw(st.sampled_from(["", "-"]))
        text, value = f"{sign}\\{cmd}{{{p}}}{{{q}}}", Fraction(p, q) * (-1 if sign else 1)
    elif kind == "frac_short":
        p, q = draw(st.integers(0, 9)), draw(st.integers(1, 9))
        text, value = f"\\dfrac{p}{q}", Fraction(p, q)
    elif kind == "money":
        cents = draw(st.integers(0, 10**8))
        text, value = draw(st.sampled_from(["$", "\\$"])) + f"{cents // 100}.{cents % 100:02d}", Fraction(cents, 100)
    else:
        n = draw(st.integers(0, 1000))
        text, value = f"{n}" + draw(st.sampled_from(["%", "\\%"])), Fraction(n)  # the sign is ignored
    wrap = draw(st.sampled_from(["{}", " {} ", "\\text{{{}}}", "{}."]))
    return wrap.format(text), value


@FUZZ_TEXT
@given(a=number_strings(), b=number_strings(), noise=st.text(max_size=30))
def test_grade_numeric_formats_reflexive_and_symmetric(a, b, noise):
    (text_a, value_a), (text_b, value_b) = a, b
    assert parse_number(text_a) == value_a
    assert grade_numeric(text_a, text_a) == OK_TRUE
    assert grade_numeric(text_a, text_b).correct == grade_numeric(text_b, text_a).correct == (value_a == value_b)
    assert grade_numeric(text_a, text_b).status == "ok"
    # Against a numeric gold, any answer text is graded (never raises); None is "no_answer".
    assert grade_numeric(noise, text_a) == GradeResult(correct=parse_number(noise) == value_a, status="ok")
    assert grade_numeric(None, text_a) == GradeResult(correct=False, status="no_answer")


# ==============================================================================================
# Grader (math-verify in pebble workers)
# ==============================================================================================

GRADER_TIMEOUT_S = 2.0
MAX_ANSWER_CHARS = 2000
GOOD_MATH = ("\\frac{1}{2}", "0.5", "math")  # graded ok + correct
WRONG_MATH = ("3", "4", "math")  # graded ok + incorrect

LATEX_TOKENS = [
    "\\frac{", "}{", "}", "{", "^{", "_{", "\\sqrt{", "\\left(", "\\right)", "\\boxed{", "x", "9", "10",
    "+", "-", "\\cdot", "\\pi", "\\infty", "!", "\\begin{pmatrix}", "&", "\\\\", "\\end{pmatrix}", "=", ",",
    "\\text{", "\\mathrm{", "\\%", "$", "\\(", "\\)", " ", "\\",
]  # fmt: skip


@st.composite
def pathological_latex(draw) -> str:
    kind = draw(st.sampled_from(["frac_nest", "tower", "big_power", "unbalanced", "long", "soup", "factorial"]))
    if kind == "frac_nest":
        n = draw(st.integers(1, 60))
        return "\\frac{" * n + "1" + "}{2}" * n
    if kind == "tower":
        base = draw(st.integers(2, 99))
        levels = draw(st.integers(2, 4))
        return "^{".join([str(base)] * levels) + "}" * (levels - 1)
    if kind == "big_power":
        return f"{draw(st.integers(2, 10**6))}^{{{draw(st.integers(10**6, 10**12))}}}"
    if kind == "unbalanced":
        return draw(st.sampled_from(["\\boxed{", "{", "}", "\\left(", "\\frac{", "^{"])) * draw(st.integers(1, 400))
    if kind == "long":  # around the grader's max_answer_chars, and beyond
        frag = draw(st.sampled_from(["1+", "x^2+", "\\frac{1}{2}+", "{}", "a", "\\sqrt{2}\\cdot "]))
        size = draw(st.sampled_from([MAX_ANSWER_CHARS - 1, MAX_ANSWER_CHARS, MAX_ANSWER_CHARS + 1])
                    | st.integers(1, 3 * MAX_ANSWER_CHARS))  # fmt: skip
        return (frag * (size // len(frag) + 1))[:size]
    if kind == "factorial":
        return f"{draw(st.integers(10**3, 10**9))}!"
    return "".join(draw(st.lists(st.sampled_from(LATEX_TOKENS), min_size=1, max_size=40)))


MATH_GOLDS = st.one_of(
    st.sampled_from(["\\frac{1}{2}", "3", "x^2", "\\sqrt{2}", "\\{1,2\\}", "0.5", "\\pi", "(1, 2)"]),
    pathological_latex().filter(lambda s: s.strip()),
)
NUMBER_TEXTS = number_strings().map(lambda pair: pair[0])
MATH_ANSWERS = st.one_of(
    pathological_latex(),
    pathological_latex(),
    pathological_latex(),
    st.none() | BLANKS | st.sampled_from(["\\frac{2}{4}", "1/2", "3"]),
)


@pytest.fixture(scope="module")
def fuzz_grader():
    with Grader(workers=2, timeout_s=GRADER_TIMEOUT_S, max_answer_chars=MAX_ANSWER_CHARS) as grader:
        assert grader.grade([GOOD_MATH]) == [OK_TRUE]  # start the pool outside the examples
        yield grader


@example(  # slow and deeply nested answers (timeouts: killed, replaced workers), an unparseable gold
    # (the checker raises), and answers just within and just past max_answer_chars
    math_items=[
        ("9^{9^{9}}", "3"),
        ("\\frac{" * 30 + "1" + "}{2}" * 30, "0.5"),
        ("{" * 900 + "1" + "}" * 900, "1"),
        ("1", "$"),
        ("1" * MAX_ANSWER_CHARS, "1"),
        ("1" * (MAX_ANSWER_CHARS + 1), "1"),
    ],
    numeric_items=[("1,000", "1000")],
    order=random.Random(0),
)
@settings(
    max_examples=12,
    deadline=timedelta(seconds=40),
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    math_items=st.lists(st.tuples(MATH_ANSWERS, MATH_GOLDS), min_size=1, max_size=3),
    numeric_items=st.lists(st.tuples(st.none() | st.text(max_size=20), NUMBER_TEXTS), max_size=2),
    order=st.randoms(use_true_random=False),
)
def test_grader_survives_pathological_latex(fuzz_grader, math_items, numeric_items, order):
    items: list[tuple[str | None, str, str]] = [(a, g, "math") for a, g in math_items]
    items += [(a, g, "numeric") for a, g in numeric_items]
    items += [GOOD_MATH, WRONG_MATH]  # sentinels: their results prove the order is kept
    order.shuffle(items)

    results = fuzz_grader.grade(items)

    assert len(results) == len(items)
    for (answer, gold, kind), result in zip(items, results):
        assert isinstance(result, GradeResult) and result.status in STATUSES
        event(f"{kind}: {result.status}")
        assert result.correct is False or result.status == "ok"  # only "ok" can be correct
        if kind == "numeric":
            assert result == grade_numeric(answer, gold)
        elif (answer, gold, kind) == GOOD_MATH:
            assert result == OK_TRUE
        elif (answer, gold, kind) == WRONG_MATH:
            assert result == OK_FALSE
        elif answer is None or not answer.strip():
            assert result == GradeResult(correct=False, status="no_answer")
        elif len(answer) > MAX_ANSWER_CHARS:
            assert result == GradeResult(correct=False, status="error")  # never sent to the checker
    # The same grader (and its replaced workers) keeps grading correctly afterwards.
    assert fuzz_grader.grade([GOOD_MATH, WRONG_MATH]) == [OK_TRUE, OK_FALSE]
