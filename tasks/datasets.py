"""Problem sources: turn dataset files into :class:`ProblemRecord` rows plus quarantine rows.

Every loader returns a :class:`LoadResult`. A bad row (invalid JSON, not an object, a missing,
empty or non-string question/answer, an unparseable gold answer, a duplicate) never stops the
good ones: it becomes a :class:`QuarantineRecord` naming the file, the 1-based line (or row / list
index) and a short reason. A source that is unusable *as a whole* (file missing, unknown dataset,
bad field mapping, a Hugging Face dataset that cannot be loaded) raises :class:`DatasetError`,
whose message names the source and the reason.

Sources
  * ``gsm8k``   -- ``data/gsm8k/{train,test}.jsonl``; gold = the number after the last ``####``.
  * ``math500`` -- ``data/math500/test.jsonl`` (test split only); gold = the ``answer`` field.
  * ``math``    -- ``data/math_train/extracted_problems_and_answers.json`` (a JSON list, train
    split only); gold = ``final_answer``; 2 rows have empty answers and are quarantined.
  * ``arith``   -- synthetic problems from :mod:`tasks.arith`. Problem ``i`` of seed ``s`` is
    ``generate_problem(i, s)``. The *test* split uses the separate seed range
    ``ARITH_TEST_SEED_OFFSET + s`` (1_000_000 + s) and the *validation* split (the problems
    promotion is decided on) ``ARITH_VALIDATION_SEED_OFFSET + s`` (2_000_000 + s), so no two splits
    are generated from the same (seed, index) stream. (Question texts can still coincide by chance: the
    default difficulty has a finite story space, ~0.2% of 5000 test questions also occur among
    the first 5000 train ones.)
  * ``jsonl``   -- any JSONL / JSON-list / Parquet file with a field mapping (dotted paths such as
    ``meta.q`` reach into nested objects).
  * ``hf``      -- anything ``datasets.load_dataset`` can load (a local file or folder, a folder
    written by ``save_to_disk``, or a hub id found in the local cache / on the hub).

Problem ids are content keys: ``sha256(dataset \\x1f split \\x1f question \\x1f gold)[:24]``, so
the same problem gets the same id on every machine and in every run. Within one load a second
row with the same id is quarantined as ``"duplicate of line N"``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tasks.arith import ArithDifficulty, generate_problem

AnswerKind = Literal["numeric", "math"]
GoldFormat = Literal["plain", "gsm8k"]

BUILTIN_DATASETS = ("gsm8k", "math500", "math", "arith")
SPEC_DATASETS = (*BUILTIN_DATASETS, "jsonl", "hf")
ANSWER_KINDS = ("numeric", "math")
GOLD_FORMATS = ("plain", "gsm8k")
ARITH_TEST_SEED_OFFSET = 1_000_000
ARITH_VALIDATION_SEED_OFFSET = 2_000_000
ARITH_SPLITS = ("train", "validation", "test")
GSM8K_SPLITS = ("train", "test")
MAX_RAW_CHARS = 2000

_GSM8K_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)")
_HF_SUFFIX_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv", ".arrow": "arrow"}


class DatasetError(ValueError):
    """A source that cannot be used at all; the message names it and says why."""


@dataclass(frozen=True)
class ProblemRecord:
    problem_id: str  # sha256(f"{dataset}\x1f{split}\x1f{question}\x1f{gold_answer}").hexdigest()[:24]
    dataset: str  # "gsm8k" | "math500" | "math" | "arith" | user-given name (jsonl/hf)
    split: str
    source: str  # file path, "hf:<name>" or "arith:seed=<seed>"
    source_row: int  # 1-based line / list index / row; the arith problem index for arith
    question: str
    gold_answer: str
    answer_kind: AnswerKind  # how to grade: "numeric" (gsm8k, arith) or "math" (math500, math)
    meta: dict = field(default_factory=dict, hash=False)  # JSON-serialisable extras (not hashed)


@dataclass(frozen=True)
class QuarantineRecord:
    source: str
    line: int  # 1-based line / list index / row (arith: problem index)
    reason: str
    raw: str  # the raw row, truncated to MAX_RAW_CHARS


@dataclass
class LoadResult:
    problems: list[ProblemRecord]
    quarantined: list[QuarantineRecord]


def data_dir() -> Path:
    """The bundled data folder: ``$PRMF_DATA_DIR`` or the repository's ``data/``."""
    override = os.environ.get("PRMF_DATA_DIR")
    if override:
        return Path(override).expanduser()
    return Path(__file__).resolve().parent.parent / "data"


def problem_id(dataset: str, split: str, question: str, gold_answer: str) -> str:
    key = f"{dataset}\x1f{split}\x1f{question}\x1f{gold_answer}"
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:24]


# --- row handling -----------------------------------------------------------------------------


class _RowError(Exception):
    """A row-level problem; its message is the quarantine reason."""


def _truncate(raw: str) -> str:
    return raw if len(raw) <= MAX_RAW_CHARS else raw[:MAX_RAW_CHARS]


def _dump(obj: Any) -> str:
    try:
        return json.dumps(obj, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return repr(obj)


def _lookup(obj: Mapping, path: str) -> tuple[bool, Any]:
    """``obj[path]``, or follow a dotted path (``meta.q``, ``choices.0.text``) into nested values."""
    if path in obj:
        return True, obj[path]
    current: Any = obj
    for part in path.split("."):
        if isinstance(current, Mapping) and part in current:
            current = current[part]
        elif isinstance(current, (list, tuple)) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return False, None
    return True, current


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _text_field(obj: Mapping, name: str, *, numbers_ok: bool) -> str:
    found, value = _lookup(obj, name)
    if not found:
        raise _RowError(f"missing field {name!r}")
    if value is None:
        raise _RowError(f"field {name!r} is null")
    if numbers_ok and isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float):
            if not math.isfinite(value):
                raise _RowError(f"field {name!r} is not a finite number ({value!r})")
            value = str(int(value)) if value.is_integer() else repr(value)
        else:
            value = str(value)
    if not isinstance(value, str):
        raise _RowError(f"field {name!r} is not a string (got {_type_name(value)})")
    value = value.strip()
    if not value:
        raise _RowError(f"empty field {name!r}")
    return value


def gsm8k_gold(answer: str) -> str:
    """The number after the last ``####`` of a GSM8K answer, commas removed; else :class:`ValueError`."""
    if "####" not in answer:
        raise ValueError("no '#### N' line")
    tail = answer.rsplit("####", 1)[1].strip().replace(",", "")
    if not tail:
        raise ValueError("nothing after '####'")
    if not _GSM8K_NUMBER.fullmatch(tail):
        raise ValueError(f"'#### {tail[:60]}' is not a number")
    return tail


def _parse_gold(answer: str, gold_format: str) -> str:
    if gold_format == "plain":
        return answer
    try:
        return gsm8k_gold(answer)
    except ValueError as exc:
        raise _RowError(f"unparseable gold answer: {exc}") from None


class _Collector:
    """Accumulates problems and quarantine rows; drops duplicates; knows when ``limit`` is reached."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.problems: list[ProblemRecord] = []
        self.quarantined: list[QuarantineRecord] = []
        self._first_row: dict[str, int] = {}

    @property
    def full(self) -> bool:
        return self.limit is not None and len(self.problems) >= self.limit

    def reject(self, source: str, line: int, reason: str, raw: str) -> None:
        self.quarantined.append(QuarantineRecord(source=source, line=line, reason=reason, raw=_truncate(raw)))

    def add(self, record: ProblemRecord, raw: str) -> None:
        first = self._first_row.get(record.problem_id)
        if first is not None:
            self.reject(record.source, record.source_row, f"duplicate of line {first}", raw)
            return
        self._first_row[record.problem_id] = record.source_row
        self.problems.append(record)

    def result(self) -> LoadResult:
        return LoadResult(problems=self.problems, quarantined=self.quarantined)


@dataclass(frozen=True)
class _Mapping:
    """How rows of one source become problems."""

    dataset: str
    split: str
    source: str
    question_field: str
    answer_field: str
    answer_kind: str
    gold_format: str
    meta: Callable[[Mapping], dict] | None = None


def _consume(rows: Iterator[tuple[int, str, Any]], mapping: _Mapping, limit: int | None) -> LoadResult:
    """Turn ``(row_number, raw_text, obj_or_RowError)`` rows into a LoadResult.

    Raises DatasetError when rows were objects but none had the question or answer field at all:
    that is a wrong field mapping, not a set of bad rows.
    """
    out = _Collector(limit)
    objects = 0
    seen_fields: set[str] = set()
    has_question = has_answer = False
    for row, raw, obj in rows:
        if out.full:
            break
        try:
            if isinstance(obj, _RowError):
                raise obj
            if not isinstance(obj, Mapping):
                raise _RowError(f"not a JSON object (got {_type_name(obj)})")
            objects += 1
            if len(seen_fields) < 50:
                seen_fields.update(str(k) for k in obj)
            has_question = has_question or _lookup(obj, mapping.question_field)[0]
            has_answer = has_answer or _lookup(obj, mapping.answer_field)[0]
            question = _text_field(obj, mapping.question_field, numbers_ok=False)
            answer = _text_field(obj, mapping.answer_field, numbers_ok=True)
            gold = _parse_gold(answer, mapping.gold_format)
            meta = mapping.meta(obj) if mapping.meta else {}
        except _RowError as exc:
            out.reject(mapping.source, row, str(exc), raw)
            continue
        record = ProblemRecord(
            problem_id=problem_id(mapping.dataset, mapping.split, question, gold),
            dataset=mapping.dataset,
            split=mapping.split,
            source=mapping.source,
            source_row=row,
            question=question,
            gold_answer=gold,
            answer_kind=mapping.answer_kind,  # type: ignore[arg-type]
            meta=meta,
        )
        out.add(record, raw)
    if objects and not out.problems:
        for role, name, present in (
            ("question", mapping.question_field, has_question),
            ("answer", mapping.answer_field, has_answer),
        ):
            if not present:
                fields = ", ".join(sorted(seen_fields)) or "none"
                raise DatasetError(
                    f"{mapping.source}: bad field mapping: {role} field {name!r} is in none of its "
                    f"{objects} rows (fields seen: {fields})"
                )
    return out.result()


# --- file readers -----------------------------------------------------------------------------


def _check_file(path: Path) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise DatasetError(f"{path}: file not found")
    if not path.is_file():
        raise DatasetError(f"{path}: not a file")
    return path


def _jsonl_rows(path: Path) -> Iterator[tuple[int, str, Any]]:
    """``(line_number, raw_line, parsed_or_RowError)`` for each non-blank line.

    Reads bytes and splits on ``\\n`` only, so line numbers match ``wc -l`` / editors even when a
    string holds U+2028 and friends; a line that is not UTF-8 is quarantined, not fatal.
    """
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise DatasetError(f"{path}: cannot open: {exc.strerror or exc}") from None
    with handle:
        for number, data in enumerate(handle, start=1):
            try:
                line = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raw = data.decode("utf-8", errors="replace").rstrip("\r\n")
                yield number, raw, _RowError(f"invalid UTF-8 at byte {exc.start}")
                continue
            if number == 1:
                line = line.lstrip("\ufeff")
            text = line.strip()
            if not text:
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                obj = _RowError(f"invalid JSON: {exc.msg} at col {exc.colno}")
            except (ValueError, RecursionError) as exc:
                # json raises these, not JSONDecodeError, for integers past Python's digit
                # limit and for very deep nesting: still one bad row, not a failed load.
                obj = _RowError(f"invalid JSON: {type(exc).__name__}: {str(exc)[:120]}")
            yield number, text, obj


def _json_list_rows(path: Path) -> Iterator[tuple[int, str, Any]]:
    """``(1-based index, raw, item)`` for each item of a file holding one JSON list."""
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: invalid JSON: {exc.msg} at line {exc.lineno} col {exc.colno}") from None
    except (ValueError, RecursionError) as exc:
        raise DatasetError(f"{path}: invalid JSON: {type(exc).__name__}: {str(exc)[:120]}") from None
    if not isinstance(data, list):
        raise DatasetError(f"{path}: expected a JSON list of objects, got {_type_name(data)}")
    for index, item in enumerate(data, start=1):
        yield index, _dump(item), item


def _check_columns(source: str, columns: list[str], mapping: _Mapping) -> None:
    for role, name in (("question", mapping.question_field), ("answer", mapping.answer_field)):
        if name not in columns and name.split(".", 1)[0] not in columns:
            raise DatasetError(
                f"{source}: bad field mapping: {role} field {name!r} is not a column "
                f"(columns: {', '.join(columns) or 'none'})"
            )


def _parquet_rows(path: Path, mapping: _Mapping) -> Iterator[tuple[int, str, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as exc:
        raise DatasetError(f"{path}: cannot read Parquet: {exc}") from None
    _check_columns(str(path), parquet.schema_arrow.names, mapping)
    return _parquet_iter(parquet)


def _parquet_iter(parquet: Any) -> Iterator[tuple[int, str, Any]]:
    number = 0
    for batch in parquet.iter_batches(batch_size=1024):
        for row in batch.to_pylist():
            number += 1
            yield number, _dump(row), row


def _looks_like_json_list(path: Path) -> bool:
    with path.open("rb") as handle:
        head = handle.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith(b"[")


# --- validation -------------------------------------------------------------------------------


def _check_limit(limit: int | None) -> None:
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
        raise DatasetError(f"limit must be a non-negative integer or None, got {limit!r}")


def _check_mapping_args(
    source: str, question_field: str, answer_field: str, answer_kind: str, gold_format: str
) -> None:
    for role, name in (("question_field", question_field), ("answer_field", answer_field)):
        if not isinstance(name, str) or not name.strip() or any(not p for p in name.split(".")):
            raise DatasetError(f"{source}: bad field mapping: {role}={name!r} is not a field name or dotted path")
    if answer_kind not in ANSWER_KINDS:
        raise DatasetError(f"{source}: answer_kind={answer_kind!r}; expected one of {', '.join(ANSWER_KINDS)}")
    if gold_format not in GOLD_FORMATS:
        raise DatasetError(f"{source}: gold_format={gold_format!r}; expected one of {', '.join(GOLD_FORMATS)}")


# --- built-in datasets ------------------------------------------------------------------------


def load_gsm8k(split: str = "test", path: Path | None = None, *, limit: int | None = None) -> LoadResult:
    """GSM8K: ``question``; gold = the number after the last ``####`` of ``answer`` (numeric)."""
    _check_limit(limit)
    if path is None:
        if split not in GSM8K_SPLITS:
            raise DatasetError(f"gsm8k: unknown split {split!r}; the bundled splits are {', '.join(GSM8K_SPLITS)}")
        path = data_dir() / "gsm8k" / f"{split}.jsonl"
    path = _check_file(path)
    mapping = _Mapping("gsm8k", split, str(path), "question", "answer", "numeric", "gsm8k")
    return _consume(_jsonl_rows(path), mapping, limit)


def _math500_meta(obj: Mapping) -> dict:
    return {key: obj.get(key) for key in ("subject", "level", "unique_id") if key in obj}


def load_math500(path: Path | None = None, *, limit: int | None = None) -> LoadResult:
    """MATH500 (test split): ``problem``; gold = ``answer``; meta = subject, level, unique_id."""
    _check_limit(limit)
    path = _check_file(path if path is not None else data_dir() / "math500" / "test.jsonl")
    mapping = _Mapping("math500", "test", str(path), "problem", "answer", "math", "plain", _math500_meta)
    return _consume(_jsonl_rows(path), mapping, limit)


def load_math_train(path: Path | None = None, *, limit: int | None = None) -> LoadResult:
    """MATH train (a JSON list of ``{problem, final_answer}``); rows are 1-based list indexes."""
    _check_limit(limit)
    path = _check_file(
        path if path is not None else data_dir() / "math_train" / "extracted_problems_and_answers.json"
    )
    mapping = _Mapping("math", "train", str(path), "problem", "final_answer", "math", "plain")
    return _consume(_json_list_rows(path), mapping, limit)


def arith_seed(seed: int, split: str) -> int:
    """The generator seed for a split: ``seed`` for train, ``ARITH_VALIDATION_SEED_OFFSET + seed`` for
    validation (the promotion pools), ``ARITH_TEST_SEED_OFFSET + seed`` for test."""
    if split not in ARITH_SPLITS:
        raise DatasetError(f"arith: unknown split {split!r}; expected one of {', '.join(ARITH_SPLITS)}")
    offsets = {"train": 0, "validation": ARITH_VALIDATION_SEED_OFFSET, "test": ARITH_TEST_SEED_OFFSET}
    return seed + offsets[split]


def load_arith(
    count: int,
    seed: int = 0,
    difficulty: ArithDifficulty | None = None,
    start: int = 0,
    split: str = "train",
) -> LoadResult:
    """Synthetic problems with indexes ``start .. start+count-1``.

    The split picks the generator seed (:func:`arith_seed`): train uses ``seed``, test uses
    ``1_000_000 + seed``, so the two splits come from disjoint seed ranges. ``source`` and
    ``meta["seed"]`` hold the seed actually used: ``generate_problem(meta["index"], meta["seed"],
    difficulty)`` reproduces a problem. ``source_row`` is the problem index. A problem whose
    text and answer repeat an earlier one in the same load is quarantined as a duplicate.
    """
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise DatasetError(f"arith: count must be a non-negative integer, got {count!r}")
    if not isinstance(start, int) or isinstance(start, bool) or start < 0:
        raise DatasetError(f"arith: start must be a non-negative integer, got {start!r}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise DatasetError(f"arith: seed must be an integer, got {seed!r}")
    used_seed = arith_seed(seed, split)
    difficulty = difficulty or ArithDifficulty()
    source = f"arith:seed={used_seed}"
    out = _Collector(None)
    for index in range(start, start + count):
        try:
            problem = generate_problem(index, used_seed, difficulty)
        except ValueError as exc:  # an inconsistent difficulty: every problem would fail
            raise DatasetError(f"{source}: {exc}") from None
        meta = {
            "gold_values": list(problem.gold_values),
            "given_numbers": list(problem.given_numbers),
            "operations": [[op, x] for op, x in problem.operations],
            "seed": used_seed,
            "index": index,
            "difficulty": difficulty.model_dump(),
        }
        gold = str(problem.answer)
        record = ProblemRecord(
            problem_id=problem_id("arith", split, problem.question, gold),
            dataset="arith",
            split=split,
            source=source,
            source_row=index,
            question=problem.question,
            gold_answer=gold,
            answer_kind="numeric",
            meta=meta,
        )
        out.add(record, _dump({"question": problem.question, "answer": problem.answer, **meta}))
    return out.result()


# --- user files -------------------------------------------------------------------------------


def load_jsonl(
    path: Path,
    dataset: str,
    question_field: str = "question",
    answer_field: str = "answer",
    split: str = "train",
    answer_kind: str = "math",
    gold_format: GoldFormat = "plain",
    *,
    limit: int | None = None,
) -> LoadResult:
    """A user file: JSONL (one object a line), a ``.json`` file holding one JSON list, or ``.parquet``.

    Fields may be dotted paths into nested objects (``meta.q``). ``gold_format="gsm8k"`` takes
    the number after the last ``####`` of the answer field. A numeric answer value (``42``) is
    accepted and turned into its text. Parquet rows and JSON-list items are numbered from 1.
    """
    _check_limit(limit)
    if not isinstance(dataset, str) or not dataset.strip():
        raise DatasetError(f"{path}: a dataset name is required")
    _check_mapping_args(str(path), question_field, answer_field, answer_kind, gold_format)
    path = _check_file(path)
    mapping = _Mapping(dataset.strip(), split, str(path), question_field, answer_field, answer_kind, gold_format)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        rows = _parquet_rows(path, mapping)
    elif suffix == ".json" and _looks_like_json_list(path):
        rows = _json_list_rows(path)
    else:
        rows = _jsonl_rows(path)
    return _consume(rows, mapping, limit)


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _open_hf(name: str, split: str, config: str | None, cache_dir: str | None) -> Any:
    """Load one split with the ``datasets`` library; every failure becomes a DatasetError."""
    import datasets

    # datasets reads HF_HUB_OFFLINE once, at import; honour it when it is set later (tests, CLI).
    offline = _env_flag("HF_HUB_OFFLINE") or _env_flag("HF_DATASETS_OFFLINE")
    saved = datasets.config.HF_HUB_OFFLINE
    if offline:
        datasets.config.HF_HUB_OFFLINE = True
    local = Path(name).expanduser()
    try:
        if local.is_file():
            builder = _HF_SUFFIX_BUILDERS.get(local.suffix.lower())
            if builder is None:
                raise DatasetError(
                    f"hf:{name}: cannot tell the file format from {local.suffix!r}; "
                    f"use one of {', '.join(sorted(_HF_SUFFIX_BUILDERS))}"
                )
            return datasets.load_dataset(
                builder, data_files={split: str(local)}, split=split, cache_dir=cache_dir
            )
        if local.is_dir() and ((local / "dataset_info.json").is_file() or (local / "dataset_dict.json").is_file()):
            loaded = datasets.load_from_disk(str(local))
            if isinstance(loaded, datasets.DatasetDict):
                if split not in loaded:
                    raise DatasetError(f"hf:{name}: no split {split!r} (splits: {', '.join(loaded)})")
                return loaded[split]
            return loaded
        if not local.exists() and (name.startswith((".", "/", "~")) or local.suffix.lower() in _HF_SUFFIX_BUILDERS):
            raise DatasetError(f"hf:{name}: file not found")
        return datasets.load_dataset(name, config, split=split, cache_dir=cache_dir)
    except DatasetError:
        raise
    except Exception as exc:  # datasets raises many kinds (ConnectionError, FileNotFoundError, ValueError, ...)
        detail = " ".join(str(exc).split())[:500] or type(exc).__name__
        hint = ""
        if not local.exists():
            hint = (
                " (not a local path; as a hub id it must be in the local Hugging Face cache"
                + (" because HF_HUB_OFFLINE is set" if offline or saved else " or the hub must be reachable")
                + ")"
            )
        where = f"hf:{name}" + (f" config={config!r}" if config else "") + f" split={split!r}"
        raise DatasetError(f"{where}: cannot load dataset: {type(exc).__name__}: {detail}{hint}") from None
    finally:
        datasets.config.HF_HUB_OFFLINE = saved


def load_hf(
    name: str,
    dataset: str,
    split: str = "train",
    question_field: str = "question",
    answer_field: str = "answer",
    answer_kind: str = "math",
    gold_format: GoldFormat = "plain",
    config: str | None = None,
    *,
    limit: int | None = None,
    cache_dir: str | Path | None = None,
) -> LoadResult:
    """A dataset through ``datasets``: a local data file (.json/.jsonl/.parquet/.csv/.arrow; it
    becomes ``split``), a local folder (``load_dataset(folder)`` or a ``save_to_disk`` folder),
    or a hub id (from the cache, or the hub when reachable). ``HF_HUB_OFFLINE=1`` makes an
    uncached hub id fail at once instead of retrying the network. Rows are numbered from 1;
    ``source`` is ``hf:<name>`` (``hf:<name>:<config>`` with a config).
    """
    _check_limit(limit)
    source = f"hf:{name}" + (f":{config}" if config else "")
    if not isinstance(dataset, str) or not dataset.strip():
        raise DatasetError(f"{source}: a dataset name is required")
    _check_mapping_args(source, question_field, answer_field, answer_kind, gold_format)
    table = _open_hf(name, split, config, str(cache_dir) if cache_dir is not None else None)
    mapping = _Mapping(dataset.strip(), split, source, question_field, answer_field, answer_kind, gold_format)
    _check_columns(source, list(table.column_names), mapping)

    def rows() -> Iterator[tuple[int, str, Any]]:
        for number, row in enumerate(table, start=1):
            yield number, _dump(row), row

    return _consume(rows(), mapping, limit)


# --- dispatcher -------------------------------------------------------------------------------


def _take(kwargs: dict[str, Any], allowed: set[str], dataset: str) -> dict[str, Any]:
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise DatasetError(
            f"{dataset}: unexpected option(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed)) or 'none'}"
        )
    return kwargs


def _arith_difficulty(value: Any) -> ArithDifficulty | None:
    if value is None or isinstance(value, ArithDifficulty):
        return value
    if isinstance(value, Mapping):
        try:
            return ArithDifficulty(**value)
        except Exception as exc:  # pydantic.ValidationError
            raise DatasetError(f"arith: bad difficulty: {exc}") from None
    raise DatasetError(f"arith: difficulty must be an ArithDifficulty or a mapping, got {_type_name(value)}")


def load_dataset_spec(dataset: str, split: str | None = None, limit: int | None = None, **kwargs: Any) -> LoadResult:
    """Load a dataset by name (what the CLI calls).

    * ``gsm8k``   split ``test`` (default) or ``train``; option ``path``.
    * ``math500`` split ``test`` only; option ``path``.
    * ``math``    split ``train`` only; option ``path``.
    * ``arith``   ``limit`` is the number of problems (required); options ``seed``, ``difficulty``
      (an ArithDifficulty or a dict), ``start``; split ``train`` (default), ``validation`` or
      ``test``, generated from seeds ``seed``, ``2_000_000 + seed`` and ``1_000_000 + seed``.
    * ``jsonl``   options ``path`` and ``dataset_name`` (required), ``question_field``,
      ``answer_field``, ``answer_kind``, ``gold_format``; split default ``train``.
    * ``hf``      options ``name`` and ``dataset_name`` (required), ``config``, ``cache_dir`` and the
      same field options; split default ``train``.

    ``limit`` keeps the first ``limit`` valid problems in file order; the quarantine lists every bad
    row among the rows scanned until then.
    """
    _check_limit(limit)
    if dataset == "gsm8k":
        opts = _take(kwargs, {"path"}, dataset)
        return load_gsm8k(split or "test", opts.get("path"), limit=limit)
    if dataset == "math500":
        opts = _take(kwargs, {"path"}, dataset)
        if (split or "test") != "test":
            raise DatasetError(f"math500: only the 'test' split exists, got {split!r}")
        return load_math500(opts.get("path"), limit=limit)
    if dataset == "math":
        opts = _take(kwargs, {"path"}, dataset)
        if (split or "train") != "train":
            raise DatasetError(f"math: only the 'train' split is bundled, got {split!r}")
        return load_math_train(opts.get("path"), limit=limit)
    if dataset == "arith":
        opts = _take(kwargs, {"seed", "difficulty", "start"}, dataset)
        if limit is None:
            raise DatasetError("arith: limit (the number of problems to generate) is required")
        return load_arith(
            limit,
            seed=opts.get("seed", 0),
            difficulty=_arith_difficulty(opts.get("difficulty")),
            start=opts.get("start", 0),
            split=split or "train",
        )
    field_opts = {"question_field", "answer_field", "answer_kind", "gold_format"}
    if dataset == "jsonl":
        opts = _take(kwargs, {"path", "dataset_name"} | field_opts, dataset)
        if not opts.get("path"):
            raise DatasetError("jsonl: the 'path' option is required")
        if not opts.get("dataset_name"):
            raise DatasetError(f"jsonl {opts['path']}: the 'dataset_name' option is required")
        path = Path(opts.pop("path"))
        name = opts.pop("dataset_name")
        return load_jsonl(path, name, split=split or "train", limit=limit, **opts)
    if dataset == "hf":
        opts = _take(kwargs, {"name", "dataset_name", "config", "cache_dir"} | field_opts, dataset)
        if not opts.get("name"):
            raise DatasetError("hf: the 'name' option (hub id or local path) is required")
        if not opts.get("dataset_name"):
            raise DatasetError(f"hf:{opts['name']}: the 'dataset_name' option is required")
        name = opts.pop("name")
        dataset_name = opts.pop("dataset_name")
        return load_hf(name, dataset_name, split=split or "train", limit=limit, **opts)
    raise DatasetError(f"unknown dataset {dataset!r}; expected one of {', '.join(SPEC_DATASETS)}")
