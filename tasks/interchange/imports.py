"""``prmf import``: public step-labelled datasets into the store, their labels kept as imported.

Each reader turns a file into ``(line, ImportedSolution | reason, raw)`` items: ``line`` is the
1-based line (JSONL), list index (JSON), row (Parquet, a ``datasets`` folder) or, for the
PRM800K step-per-row Parquet, the first row of the solution's trajectory. A reason is a bad
record: it goes to ``quarantine`` with the file and line, and the rest is imported.

What is stored, in one transaction per import:

* ``problems``: dataset (``--dataset``, default the format's name), split (``--split``, default
  train), source = the path, source_row = the record's line. A format without a gold answer
  (Math-Shepherd, TRL, OpenRLHF, ProcessBench, PRM800K's step-per-row Parquet) stores an empty gold
  answer and ``meta.gold_unknown``: the factory never labels or evaluates such a problem.
* ``generations`` (one per problem and import, generator ``import:<format>``, 0 tokens) and
  ``solutions`` (correctness as the format says it; 0 generated tokens; grade_status ``imported``).
* ``steps``: the decoded texts with the factory's prefix hashes (``tasks.steps``: ``line`` steps,
  or ``paragraph`` when a step holds a line break), gold NULL.
* ``imported_step_labels``: he, se (soft value or NULL) and PRM800K's rating per labelled step.
* ``imports``: the import's key (format, file sha256, dataset, split) and counts. The same file
  imported into the same place again is reported as already imported and stores nothing.

Label conventions. PRM800K: each step is the chosen completion (or the labeller's own written
step, which has no rating: he true); ``he = rating >= 0`` (a neutral 0 is "not wrong", as PRM800K's
own convention for the solutions it counts as not containing a mistake), the rating itself is kept;
the trajectory ends at its first step without a chosen completion, with the first completion rated
-1 there as its wrong last step; a solution is correct when it finished (``finish_reason
solution`` / its last row ``is_solution``) with no step rated -1. ProcessBench: ``label`` is the
0-based index of the earliest wrong step (-1: none); the steps before it are correct, it is wrong,
the steps after it get no label; correctness is ``final_answer_correct``. MATH-APS (OmegaPRM):
each prefix's ``mc_value`` is the soft label, ``he = mc_value > 0``; every root-to-leaf path of the
tree is a solution (the flat file lists prefixes: a prefix's parent is the longest other prefix it
extends). Elsewhere the solution is correct when its last step's hard label is.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.datasets import DatasetError, _json_list_rows, _jsonl_rows, _RowError, problem_id
from tasks.interchange.formats import (
    FormatError, LabelledSolution, OPENRLHF_PLACEHOLDER, decode_math_shepherd, decode_openrlhf, decode_trl,
)
from tasks.store import Store, content_key, internal_sql, to_json

FORMATS = ("math-shepherd", "trl", "openrlhf", "prm800k", "processbench", "math-aps", "math-aps-tree")
MAX_RAW_CHARS = 2000


@dataclass(frozen=True)
class ImportedSolution:
    question: str
    steps: tuple[str, ...]
    he: tuple[bool | None, ...]  # None: the source gives this step no label (ProcessBench after the error)
    correct: bool
    se: tuple[float | None, ...] | None = None
    rating: tuple[int | None, ...] | None = None
    gold: str = ""  # "" when the format carries no gold answer
    answer_kind: str = "math"
    meta: dict = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if not self.question.strip():
            raise FormatError("the question is empty")
        if not self.steps:
            raise FormatError("the solution has no steps")
        for name, values in (("labels", self.he), ("soft labels", self.se), ("ratings", self.rating)):
            if values is not None and len(values) != len(self.steps):
                raise FormatError(f"{len(self.steps)} steps but {len(values)} {name}")
        for i, step in enumerate(self.steps, 1):
            if not isinstance(step, str) or not step.strip():
                raise FormatError(f"step {i} is empty")
        for i, value in enumerate(self.se or (), 1):
            if value is not None and not 0 <= value <= 1:
                raise FormatError(f"soft label of step {i} is {value}, outside [0, 1]")


Item = tuple[int, "ImportedSolution | str", str]  # (line, solution or quarantine reason, raw record)


def _from_labelled(solution: LabelledSolution, meta: dict | None = None) -> ImportedSolution:
    return ImportedSolution(solution.question, solution.steps, solution.labels, bool(solution.labels[-1]),
                            se=solution.soft, meta=meta or {})


def _decoded(rows: Iterator[tuple[int, str, Any]], decode: Callable[[dict], ImportedSolution]) -> Iterator[Item]:
    """Formats with one solution per record."""
    return _expanded(rows, lambda obj: [decode(obj)])


def _dump(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, default=str)


# --- readers ------------------------------------------------------------------------------------


def read_math_shepherd(path: Path, **_: Any) -> Iterator[Item]:
    def decode(obj: dict) -> ImportedSolution:
        meta = {"task": obj["task"]} if isinstance(obj.get("task"), str) else {}
        return _from_labelled(decode_math_shepherd(obj), meta)

    return _decoded(_jsonl_rows(path), decode)


def read_openrlhf(path: Path, placeholder: str | None = None, **_: Any) -> Iterator[Item]:
    return _decoded(_jsonl_rows(path), lambda obj: _from_labelled(decode_openrlhf(obj, placeholder or OPENRLHF_PLACEHOLDER)))


def _table_rows(table: Any) -> Iterator[tuple[int, str, Any]]:
    for number, row in enumerate(table.to_pylist(), start=1):
        yield number, _dump(row), row


def read_trl(path: Path, split: str | None = None, **_: Any) -> Iterator[Item]:
    """JSONL, Parquet, or a ``datasets`` ``save_to_disk`` folder (a DatasetDict: the split named
    ``split``, or its only split)."""
    if path.is_dir():
        import datasets

        try:
            loaded = datasets.load_from_disk(str(path))
        except (FileNotFoundError, ValueError) as exc:
            raise DatasetError(f"{path}: not a `datasets` save_to_disk folder: {exc}") from None
        if isinstance(loaded, datasets.DatasetDict):
            names = list(loaded)
            name = split if split in loaded else (names[0] if len(names) == 1 else None)
            if name is None:
                raise DatasetError(f"{path}: a DatasetDict with splits {', '.join(names)}; pass --split to pick one")
            loaded = loaded[name]
        rows = _table_rows(loaded.data.table)
    elif path.suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = _table_rows(pq.read_table(path))
    else:
        rows = _jsonl_rows(path)
    return _decoded(rows, lambda obj: _from_labelled(decode_trl(obj)))


def _processbench_record(obj: dict) -> ImportedSolution:
    problem, steps, label = obj.get("problem"), obj.get("steps"), obj.get("label")
    if not isinstance(problem, str):
        raise FormatError("no 'problem' string field")
    if not isinstance(steps, list) or not all(isinstance(s, str) for s in steps):
        raise FormatError("'steps' is not a list of strings")
    if not isinstance(label, int) or isinstance(label, bool) or not -1 <= label < len(steps):
        raise FormatError(f"'label' is {label!r}, not -1 or a step index in 0..{len(steps) - 1}")
    correct = obj.get("final_answer_correct")
    if not isinstance(correct, bool):
        raise FormatError("no boolean 'final_answer_correct' field")
    he = tuple(True if label == -1 or i < label else (False if i == label else None) for i in range(len(steps)))
    meta = {k: obj[k] for k in ("id", "generator") if k in obj}
    return ImportedSolution(problem, tuple(steps), he, correct, meta=meta)


def read_processbench(path: Path, **_: Any) -> Iterator[Item]:
    rows = _jsonl_rows(path) if path.suffix == ".jsonl" else _json_list_rows(path)
    return _decoded(rows, _processbench_record)


def _rating(value: Any, where: str) -> int:
    if isinstance(value, bool) or value not in (-1, 0, 1):
        raise FormatError(f"{where}: rating {value!r} is not -1, 0 or 1")
    return int(value)


def _prm800k_record(obj: dict) -> ImportedSolution:
    question, label = obj.get("question"), obj.get("label")
    if not isinstance(question, dict) or not isinstance(question.get("problem"), str):
        raise FormatError("no 'question.problem' string field")
    if not isinstance(label, dict) or not isinstance(label.get("steps"), list):
        raise FormatError("no 'label.steps' list")
    steps: list[str] = []
    ratings: list[int | None] = []
    ended_wrong = False
    for i, step in enumerate(label["steps"], 1):
        if not isinstance(step, dict):
            raise FormatError(f"step {i} is not an object")
        completions = step.get("completions") or []
        chosen, human = step.get("chosen_completion"), step.get("human_completion")
        if isinstance(chosen, int) and not isinstance(chosen, bool):
            if not 0 <= chosen < len(completions):
                raise FormatError(f"step {i}: chosen_completion {chosen} outside its {len(completions)} completions")
            steps.append(completions[chosen].get("text"))
            ratings.append(_rating(completions[chosen].get("rating"), f"step {i}"))
            continue
        if isinstance(human, dict):  # the labeller wrote the step: no rating, taken as right
            steps.append(human.get("text"))
            ratings.append(None)
            continue
        # No step was chosen: the trajectory ends here, with the completion rated wrong if there is one.
        wrong = [c for c in completions if isinstance(c, dict) and c.get("rating") == -1]
        if wrong:
            steps.append(wrong[0].get("text"))
            ratings.append(-1)
            ended_wrong = True
        break
    if not steps:
        raise FormatError("no step has a chosen completion")
    for i, text in enumerate(steps, 1):
        if not isinstance(text, str):
            raise FormatError(f"step {i} has no text")
    he = tuple(r is None or r >= 0 for r in ratings)
    finished = label.get("finish_reason") == "solution" and not ended_wrong
    gold = question.get("ground_truth_answer")
    meta = {k: obj[k] for k in ("labeler", "generation", "timestamp") if obj.get(k) is not None}
    meta["finish_reason"] = label.get("finish_reason")
    return ImportedSolution(question["problem"], tuple(steps), he, finished and all(he), rating=tuple(ratings),
                            gold=gold if isinstance(gold, str) else "", meta=meta)


def _prm800k_stepwise(path: Path) -> Iterator[Item]:
    """The step-per-row Parquet (instruction, responses = the steps so far, next_response, rating,
    is_preferred_response, is_solution): consecutive rows of one labelling trajectory are grouped
    (a new one starts when the problem changes or the prefix gets shorter), and the chain of
    preferred rows is the solution."""
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as exc:  # noqa: BLE001 - any unreadable file is one clear error
        raise DatasetError(f"{path}: cannot read Parquet: {exc}") from None
    needed = {"instruction", "responses", "next_response", "rating", "is_preferred_response", "is_solution"}
    if rows and not needed <= set(rows[0]):
        raise DatasetError(f"{path}: not the PRM800K step-per-row Parquet (missing {', '.join(sorted(needed - set(rows[0])))})")
    groups: list[tuple[int, list[dict]]] = []
    depth = -1
    for number, row in enumerate(rows, start=1):
        here = len(row.get("responses") or [])
        if not groups or row.get("instruction") != groups[-1][1][0].get("instruction") or here < depth or (
                here == 0 and depth > 0):
            groups.append((number, []))
            depth = 0
        groups[-1][1].append(row)
        depth = max(depth, here)
    for first, group in groups:
        raw = _dump({"instruction": group[0].get("instruction"), "rows": len(group)})
        try:
            yield first, _stepwise_solution(group), raw
        except FormatError as exc:
            yield first, str(exc), raw


def _stepwise_solution(group: list[dict]) -> ImportedSolution:
    chain: list[dict] = []
    for row in group:
        if row.get("is_preferred_response") and list(row.get("responses") or []) == [r["next_response"] for r in chain]:
            chain.append(row)
    if not chain:
        raise FormatError(f"a trajectory of {len(group)} rows with no preferred step")
    ratings: list[int | None] = []
    for i, row in enumerate(chain, 1):
        ratings.append(None if row.get("is_human_response") and row.get("rating") is None
                       else _rating(row.get("rating"), f"step {i}"))
    steps = [r["next_response"] for r in chain]
    # The trajectory may end at a step rated wrong that nobody chose: it is the solution's last step.
    after = [r for r in group if len(r.get("responses") or []) == len(chain) and r.get("rating") == -1
             and list(r.get("responses") or []) == steps]
    finished = bool(chain[-1].get("is_solution"))
    if not finished and after:
        steps.append(after[0]["next_response"])
        ratings.append(-1)
    he = tuple(r is None or r >= 0 for r in ratings)
    question = group[0].get("instruction")
    if not isinstance(question, str):
        raise FormatError("no 'instruction' string")
    return ImportedSolution(question, tuple(steps), he, finished and all(he), rating=tuple(ratings),
                            meta={"answer": chain[-1].get("answer")} if finished else {})


def read_prm800k(path: Path, **_: Any) -> Iterator[Item]:
    """Raw PRM800K JSONL (one labelling per line), or the phase-1 step-per-row Parquet."""
    if path.suffix == ".parquet":
        return _prm800k_stepwise(path)
    return _decoded(_jsonl_rows(path), _prm800k_record)


def _mc(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise FormatError(f"{where}: mc_value {value!r} is not a number in [0, 1]")
    return float(value)


def _aps_question(obj: dict) -> tuple[str, str]:
    question, answer = obj.get("question"), obj.get("final_answer")
    if not isinstance(question, str) or not question.strip():
        raise FormatError("no 'question' string field")
    return question, answer if isinstance(answer, str) else ""


def _aps_solutions(question: str, gold: str, paths: list[list[tuple[str, float]]], root_mc: float | None
                   ) -> list[ImportedSolution]:
    out = []
    for path in paths:
        steps = tuple(text.strip() for text, _ in path)
        se = tuple(mc for _, mc in path)
        he = tuple(mc > 0 for mc in se)
        out.append(ImportedSolution(question, steps, he, he[-1], se=se, gold=gold,
                                    meta={"root_mc_value": root_mc} if root_mc is not None else {}))
    return out


def _aps_tree(obj: dict) -> list[ImportedSolution]:
    question, gold = _aps_question(obj)
    root = obj.get("reasoning_steps")
    if not isinstance(root, dict):
        raise FormatError("'reasoning_steps' is not a tree (an object with text, mc_value, children)")
    paths: list[list[tuple[str, float]]] = []

    def walk(node: dict, path: list[tuple[str, float]], where: str) -> None:
        children = node.get("children") or []
        if not isinstance(children, list):
            raise FormatError(f"{where}: 'children' is not a list")
        if not children:
            if path:
                paths.append(path)
            return
        for k, child in enumerate(children, 1):
            here = f"{where}.{k}"
            if not isinstance(child, dict) or not isinstance(child.get("text"), str) or not child["text"].strip():
                raise FormatError(f"node {here} has no text")
            walk(child, [*path, (child["text"], _mc(child.get("mc_value"), f"node {here}"))], here)

    walk(root, [], "root")
    if not paths:
        raise FormatError("the tree has no step below its root")
    return _aps_solutions(question, gold, paths, _mc(root.get("mc_value"), "root") if "mc_value" in root else None)


def _aps_flat(obj: dict) -> list[ImportedSolution]:
    question, gold = _aps_question(obj)
    entries = obj.get("reasoning_steps")
    if not isinstance(entries, list) or not entries:
        raise FormatError("'reasoning_steps' is not a non-empty list of {solution_prefix, mc_value}")
    values: dict[str, float] = {}
    for k, entry in enumerate(entries, 1):
        if not isinstance(entry, dict) or not isinstance(entry.get("solution_prefix"), str):
            raise FormatError(f"reasoning step {k} has no 'solution_prefix' string")
        prefix = entry["solution_prefix"]
        if not prefix.startswith(question):
            raise FormatError(f"reasoning step {k}: its prefix does not start with the question")
        values.setdefault(prefix, _mc(entry.get("mc_value"), f"reasoning step {k}"))
    nodes = sorted(p for p in values if p.strip() != question.strip())
    if not nodes:
        raise FormatError("no prefix beyond the question")
    # A prefix's parent: the longest other prefix that it extends at a whitespace boundary.
    by_length = sorted(nodes, key=len)
    parent: dict[str, str | None] = {}
    for node in nodes:
        candidates = [p for p in by_length if len(p) < len(node) and node.startswith(p)
                      and (p[-1:].isspace() or node[len(p):len(p) + 1].isspace())]
        parent[node] = candidates[-1] if candidates else None
    has_child = {p for p in parent.values() if p is not None}
    paths = []
    for leaf in (n for n in nodes if n not in has_child):
        chain = [leaf]
        while parent[chain[-1]] is not None:
            chain.append(parent[chain[-1]])
        chain.reverse()
        path, before = [], question
        for node in chain:
            path.append((node[len(before):], values[node]))
            before = node
        paths.append(path)
    root_mc = values.get(question)
    return _aps_solutions(question, gold, paths, root_mc)


def _expanded(rows: Iterator[tuple[int, str, Any]], expand: Callable[[dict], list[ImportedSolution]]) -> Iterator[Item]:
    """Formats whose one record holds several solutions (a tree): each is yielded with the record's line."""
    for line, raw, obj in rows:
        if isinstance(obj, _RowError):
            yield line, str(obj), raw
            continue
        if not isinstance(obj, dict):
            yield line, f"expected a JSON object, got {type(obj).__name__}", raw
            continue
        try:
            solutions = expand(obj)
        except FormatError as exc:
            yield line, str(exc), raw
            continue
        for solution in solutions:
            yield line, solution, raw


def read_math_aps(path: Path, **_: Any) -> Iterator[Item]:
    return _expanded(_jsonl_rows(path), _aps_flat)


def read_math_aps_tree(path: Path, **_: Any) -> Iterator[Item]:
    return _expanded(_jsonl_rows(path), _aps_tree)


READERS: dict[str, Callable[..., Iterator[Item]]] = {
    "math-shepherd": read_math_shepherd, "trl": read_trl, "openrlhf": read_openrlhf, "prm800k": read_prm800k,
    "processbench": read_processbench, "math-aps": read_math_aps, "math-aps-tree": read_math_aps_tree,
}


def default_dataset(fmt: str, path: Path) -> str:
    """``processbench-<file stem>`` (processbench-gsm8k), else the format's name."""
    return f"processbench-{path.stem}" if fmt == "processbench" else fmt


def read_records(path: Path, fmt: str, split: str | None = None, placeholder: str | None = None) -> Iterator[Item]:
    if fmt not in READERS:
        raise DatasetError(f"unknown import format {fmt!r}; formats: {', '.join(FORMATS)}")
    if not path.exists():
        raise DatasetError(f"{path}: no such file or folder")
    return READERS[fmt](path, split=split, placeholder=placeholder)


# --- storing ------------------------------------------------------------------------------------


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def import_key(fmt: str, sha256: str, dataset: str, split: str) -> str:
    return content_key("import", fmt, sha256, dataset, split)


@dataclass(frozen=True)
class ImportSummary:
    import_id: str
    format: str
    source: str
    dataset: str
    split: str
    read: int  # records read (a tree record: each of its solutions)
    imported: int  # distinct solutions stored with their labels
    quarantined: int  # records sent to quarantine
    already_imported: bool = False
    duplicates: int = 0  # records repeating a solution already read from the file (stored once)
    problems: int = 0  # distinct problems of the imported solutions
    steps: int = 0
    labels: int = 0  # step labels stored
    reasons: tuple[str, ...] = ()  # the first quarantine reasons, "line N: why"


def _step_format(steps: Sequence[str]) -> str:
    return "paragraph" if any("\n" in s for s in steps) else "line"


def import_file(store: Store, path: Path | str, fmt: str, dataset: str | None = None, split: str = "train",
                placeholder: str | None = None, limit: int | None = None, run_id: str | None = None,
                advance: Callable[[int], None] | None = None) -> ImportSummary:
    """Read ``path`` as ``fmt`` and store its solutions, steps and step labels (see the module doc)."""
    from tasks.generation import solution_key
    from tasks.grading import extract_answer
    from tasks.steps import join_steps, prefix_text

    path = Path(path)
    dataset = dataset or default_dataset(fmt, path)
    source = str(path)
    items = read_records(path, fmt, split, placeholder)  # checks the format and the path first
    sha = file_sha256(path)
    import_id = import_key(fmt, sha, dataset, split)
    if store.existing_keys("imports", "import_id", [import_id]):
        row = store.query(internal_sql("import_by_id"), {"import_id": import_id}).as_dicts()[0]
        return ImportSummary(import_id, fmt, source, dataset, split, row["records_read"], row["records_imported"],
                             row["records_quarantined"], already_imported=True)
    generator = f"import:{fmt}"
    problems: dict[str, dict] = {}
    by_problem: dict[str, list[str]] = {}
    solutions: dict[str, dict] = {}
    steps: list[dict] = []
    labels: list[dict] = []
    quarantine: dict[int, dict] = {}
    read = duplicates = 0
    for line, item, raw in items:
        if limit is not None and read >= limit:
            break
        read += 1
        if advance:
            advance(1)
        if isinstance(item, str):
            quarantine.setdefault(line, {"source": source, "line": line, "reason": item, "raw": raw[:MAX_RAW_CHARS],
                                         "run_id": run_id})
            continue
        pid = problem_id(dataset, split, item.question, item.gold)
        if pid not in problems:
            meta = {"import_id": import_id, "format": fmt, **({"gold_unknown": True} if not item.gold else {})}
            problems[pid] = {"problem_id": pid, "dataset": dataset, "split": split, "source": source,
                             "source_row": line, "question": item.question, "gold_answer": item.gold,
                             "answer_kind": item.answer_kind, "meta": to_json(meta)}
        step_format = _step_format(item.steps)
        text = join_steps(list(item.steps), step_format)
        sid = solution_key(pid, generator, text, step_format)
        if sid in solutions:
            duplicates += 1  # the same solution twice in one file: stored once (with its first labels)
            continue
        generation_id = content_key(pid, generator, import_id)
        solutions[sid] = {"solution_id": sid, "problem_id": pid, "generation_id": generation_id,
                          "generator_model": generator, "text": text, "final_answer": extract_answer(text),
                          "correct": item.correct, "grade_status": "imported", "num_tokens": 0,
                          "num_steps": len(item.steps), "step_format": step_format, "run_id": run_id or import_id}
        by_problem.setdefault(pid, []).append(sid)
        for i, step in enumerate(item.steps, 1):
            steps.append({"solution_id": sid, "step_index": i, "text": step,
                          "prefix_hash": content_key(prefix_text(list(item.steps), i, step_format)), "gold": None})
            if item.he[i - 1] is None:
                continue
            labels.append({"solution_id": sid, "step_index": i, "import_id": import_id, "he": bool(item.he[i - 1]),
                           "se": None if item.se is None or item.se[i - 1] is None else float(item.se[i - 1]),
                           "rating": None if item.rating is None else item.rating[i - 1]})
    generations = [{"generation_id": content_key(pid, generator, import_id), "problem_id": pid,
                    "generator_model": generator,
                    "params": to_json({"import_id": import_id, "format": fmt, "source": source}),
                    "n": len(sids), "num_tokens": 0, "run_id": run_id or import_id}
                   for pid, sids in by_problem.items()]
    used = {pid for pid in by_problem}
    summary = ImportSummary(import_id, fmt, source, dataset, split, read, len(solutions), len(quarantine),
                            duplicates=duplicates, problems=len(used), steps=len(steps), labels=len(labels),
                            reasons=tuple(f"line {q['line']}: {q['reason']}" for q in list(quarantine.values())[:5]))
    with store.transaction() as con:
        store.insert_rows("problems", [problems[pid] for pid in used], con)
        store.insert_rows("generations", generations, con)
        store.insert_rows("solutions", list(solutions.values()), con)
        store.insert_rows("steps", steps, con)
        store.insert_rows("imported_step_labels", labels, con)
        store.insert_rows("quarantine", list(quarantine.values()), con)
        store.insert_rows("imports", [{"import_id": import_id, "format": fmt, "source": source, "sha256": sha,
                                       "dataset": dataset, "split": split, "records_read": read,
                                       "records_imported": len(solutions), "records_quarantined": len(quarantine),
                                       "run_id": run_id}], con)
    return summary


def count_records(path: Path | str, fmt: str, split: str | None = None, placeholder: str | None = None) -> int:
    """How many records a progress bar should expect (one pass over the file)."""
    return sum(1 for _ in read_records(Path(path), fmt, split, placeholder))


def import_with_progress(store: Store, config: Any, run_id: str | None = None) -> ImportSummary:
    """:func:`import_file` for an ``ImportConfig``, with a progress bar over the file's records."""
    from tasks.progress import progress

    if not config.path:
        raise DatasetError("no file to import: give its path (prmf import PATH) or `path` in --config")
    path = Path(config.path)
    if path.exists() and config.format in READERS and store.existing_keys("imports", "import_id", [import_key(
            config.format, file_sha256(path), config.dataset or default_dataset(config.format, path), config.split)]):
        return import_file(store, path, config.format, config.dataset, config.split, run_id=run_id)  # says so, stores nothing
    total = count_records(path, config.format, config.split, config.placeholder)
    if config.limit is not None:
        total = min(total, config.limit)
    with progress(f"import {config.format}", total) as advance:
        return import_file(store, path, config.format, config.dataset, config.split, config.placeholder,
                           config.limit, run_id, advance)


@task(name="import-file", cache_policy=NO_CACHE, task_run_name="import-{config.format}")
def import_task(config: Any, run_id: str | None = None) -> ImportSummary:
    """The Prefect task: open the store, import ``config.path``, release the store."""
    with Store(config.db) as store:
        return import_with_progress(store, config, run_id)
