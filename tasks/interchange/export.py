"""``prmf export``: the store's step labels as a dataset PRM trainers read (formats in
:mod:`.formats`), with a dataset card stating where every label came from.

Streaming: the selected problems are listed once, sorted by id (``export_problems.sql``), and their
solutions queried ``problems_per_query`` problems at a time (``export_solutions.sql``): the chunk's
id range reaches the rollout scan, so DuckDB aggregates one chunk's rollouts and step lists, never
the store's. Rows come out in problem-id order. Each chunk comes in Arrow record batches
(``Store.stream``) ordered by problem, is encoded row by row and appended to Parquet/JSONL shards of
``shard_rows`` rows, so memory holds one batch, not the dataset. The ``datasets`` copy (``hf``) is built from the Parquet
shards (memory-mapped). The output folder is written under a temporary name and renamed when
complete: a folder at ``out`` is always a whole export.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tasks.config import ExportConfig
from tasks.interchange.formats import (
    FormatError,
    LabelledSolution,
    encode_math_shepherd,
    encode_openrlhf,
    encode_trl,
    placeholder_positions,
)
from tasks.progress import progress
from tasks.store import Store, internal_sql

_META = [("solution_id", pa.string()), ("problem_id", pa.string()), ("dataset", pa.string()), ("split", pa.string())]


class ExportError(ValueError):
    """An export that cannot be made as asked; the message says why and what to change."""


def schema(config: ExportConfig) -> pa.Schema:
    strings, bools, floats = pa.list_(pa.string()), pa.list_(pa.bool_()), pa.list_(pa.float64())
    columns = {
        "trl": [("prompt", pa.string()), ("completions", strings), ("labels", bools), ("soft_labels", floats)],
        "math-shepherd": [("input", pa.string()), ("label", pa.string())],
        "openrlhf": [("input", pa.string()), ("label", floats if config.openrlhf_soft else strings)],
        "pairs": [("prompt", pa.string()), ("chosen", pa.string()), ("rejected", pa.string()),
                  ("chosen_steps", strings), ("rejected_steps", strings), ("rejected_first_error", pa.int32()),
                  ("chosen_solution_id", pa.string()), ("rejected_solution_id", pa.string())],
        "processbench": [("id", pa.string()), ("generator", pa.string()), ("problem", pa.string()),
                         ("steps", strings), ("final_answer_correct", pa.bool_()), ("label", pa.int32())],
    }[config.format]
    meta = _META if config.format not in ("pairs", "processbench") else [m for m in _META if m[0] != "solution_id"]
    return pa.schema(columns + meta)


def first_error(labels: Iterable[bool]) -> int:
    """0-based index of the first wrong step, -1 when none is wrong (ProcessBench's ``label``)."""
    return next((i for i, ok in enumerate(labels) if not ok), -1)


def to_solution(row: dict[str, Any], config: ExportConfig) -> LabelledSolution:
    labels = [bool(v) for v in row["labels"]]
    soft = row["soft_labels"] if any(v is not None for v in row["soft_labels"]) else None
    steps = list(row["steps"])
    if config.after_first_error == "drop" and (cut := first_error(labels)) >= 0:
        steps, labels, soft = steps[:cut + 1], labels[:cut + 1], None if soft is None else soft[:cut + 1]
    return LabelledSolution(row["question"], tuple(steps), tuple(labels), None if soft is None else tuple(soft))


class PlaceholderCheck:
    """OpenRLHF's documented rule: the placeholder is one token of the trainer's tokenizer, and
    the tokenised input holds it exactly once per label."""

    def __init__(self, tokenizer_setting: str, placeholder: str) -> None:
        from transformers import AutoTokenizer

        from tasks.models import resolve_model

        self.tokenizer = AutoTokenizer.from_pretrained(resolve_model(tokenizer_setting).path)
        ids = self.tokenizer.encode(placeholder, add_special_tokens=False)
        if len(ids) != 1:
            special = [t for t in self.tokenizer.all_special_tokens
                       if t not in (self.tokenizer.eos_token, self.tokenizer.bos_token, self.tokenizer.pad_token)]
            extra = [t.content for t in self.tokenizer.added_tokens_decoder.values() if t.content not in special]
            raise ExportError(
                f"placeholder {placeholder!r} is {len(ids)} tokens for tokenizer {tokenizer_setting}, OpenRLHF needs "
                f"one: pass --placeholder with a single token of it, e.g. an unused special token "
                f"({', '.join((special + extra)[3:8] or special[:5])})")
        self.placeholder_id = ids[0]

    def check(self, record: dict[str, Any], solution_id: str) -> None:
        ids = self.tokenizer(record["input"], add_special_tokens=False)["input_ids"]
        found = len(placeholder_positions(ids, self.placeholder_id))
        if found != len(record["label"]):
            raise ExportError(f"solution {solution_id}: the tokenised input holds the placeholder {found} times for "
                              f"{len(record['label'])} labels (it merges with the text around it): choose another "
                              "--placeholder, e.g. a special token of the tokenizer")


def encode_rows(rows: Iterable[dict[str, Any]], config: ExportConfig, stats: Counter,
                check: PlaceholderCheck | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """(split, record) per exported record; ``stats`` counts rows, steps and labels."""
    pending: list[tuple[dict[str, Any], LabelledSolution]] = []  # pairs: the current problem's solutions
    for row in rows:
        try:
            solution = to_solution(row, config)
        except FormatError as exc:
            raise ExportError(f"solution {row['solution_id']}: {exc}") from exc
        meta = {"problem_id": row["problem_id"], "dataset": row["dataset"], "split": row["split"]}
        stats["solutions"] += 1
        stats["steps"] += len(solution.steps)
        stats["positive_steps"] += sum(solution.labels)
        stats["solutions_with_a_wrong_step"] += first_error(solution.labels) >= 0
        if config.format == "pairs":
            if pending and pending[0][0]["problem_id"] != row["problem_id"]:
                yield from _pairs(pending, config, stats)
                pending = []
            pending.append((row, solution))
            continue
        if config.format == "processbench":
            record = {"id": row["solution_id"], "generator": row["generator_model"], "problem": solution.question,
                      "steps": list(solution.steps), "final_answer_correct": bool(row["correct"]),
                      "label": first_error(solution.labels), **meta}
        else:
            try:
                if config.format == "trl":
                    record = encode_trl(solution)
                elif config.format == "math-shepherd":
                    record = encode_math_shepherd(solution)
                else:
                    record = encode_openrlhf(solution, config.placeholder, config.openrlhf_soft)
            except FormatError as exc:
                raise ExportError(f"solution {row['solution_id']}: {exc}") from exc
            if check is not None:
                check.check(record, row["solution_id"])
            record = {**record, "solution_id": row["solution_id"], **meta}
        stats["rows"] += 1
        yield row["split"], record
    if pending:
        yield from _pairs(pending, config, stats)


def _pairs(solutions: list[tuple[dict[str, Any], LabelledSolution]], config: ExportConfig,
           stats: Counter) -> Iterator[tuple[str, dict[str, Any]]]:
    """Preference pairs of one problem: a correct solution with no wrong step (chosen) against one
    with a wrong step (rejected), earliest first error first, at most max_pairs_per_problem."""
    good = [(r, s) for r, s in solutions if r["correct"] and first_error(s.labels) < 0]
    bad = sorted(((r, s) for r, s in solutions if first_error(s.labels) >= 0),
                 key=lambda rs: (first_error(rs[1].labels), rs[0]["solution_id"]))
    made = 0
    for i, (rejected_row, rejected) in enumerate(bad):
        if not good or made >= config.max_pairs_per_problem:
            break
        chosen_row, chosen = good[i % len(good)]
        made += 1
        stats["rows"] += 1
        yield rejected_row["split"], {
            "prompt": chosen.question, "chosen": "\n".join(chosen.steps), "rejected": "\n".join(rejected.steps),
            "chosen_steps": list(chosen.steps), "rejected_steps": list(rejected.steps),
            "rejected_first_error": first_error(rejected.labels), "chosen_solution_id": chosen_row["solution_id"],
            "rejected_solution_id": rejected_row["solution_id"], "problem_id": chosen_row["problem_id"],
            "dataset": chosen_row["dataset"], "split": chosen_row["split"]}
    if not made:
        stats["problems_without_a_pair"] += 1


class ShardWriter:
    """Per split, Parquet and/or JSONL shards of at most ``shard_rows`` rows under ``folder/data``,
    renamed ``<split>-00000-of-00003.<ext>`` (the Hugging Face convention) when closed."""

    def __init__(self, folder: Path, schema: pa.Schema, kinds: tuple[str, ...], shard_rows: int) -> None:
        self.folder, self.schema, self.kinds, self.shard_rows = folder / "data", schema, kinds, shard_rows
        self.folder.mkdir(parents=True)
        self.buffers: dict[str, list[dict[str, Any]]] = {}
        self.shards: dict[str, list[dict[str, Path]]] = {}
        self.open: dict[str, dict[str, Any]] = {}
        self.rows_in_shard: Counter = Counter()

    def add(self, split: str, record: dict[str, Any]) -> None:
        buffer = self.buffers.setdefault(split, [])
        buffer.append(record)
        if len(buffer) >= 1024:
            self._flush(split)

    def _flush(self, split: str) -> None:
        records = self.buffers.get(split) or []
        while records:
            if self.rows_in_shard[split] == 0:
                self._open(split)
            room = self.shard_rows - self.rows_in_shard[split]
            chunk, records = records[:room], records[room:]
            table = pa.Table.from_pylist(chunk, schema=self.schema)
            files = self.open[split]
            if "parquet" in files:
                files["parquet"].write_table(table)
            if "jsonl" in files:
                files["jsonl"].writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in chunk)
            self.rows_in_shard[split] += len(chunk)
            if self.rows_in_shard[split] >= self.shard_rows:
                self._close(split)
        self.buffers[split] = []

    def _open(self, split: str) -> None:
        index = len(self.shards.setdefault(split, []))
        paths = {kind: self.folder / f"{split}-{index:05d}.{kind}" for kind in self.kinds}
        self.shards[split].append(paths)
        self.open[split] = {}
        if "parquet" in paths:
            self.open[split]["parquet"] = pq.ParquetWriter(paths["parquet"], self.schema)
        if "jsonl" in paths:
            self.open[split]["jsonl"] = paths["jsonl"].open("w", encoding="utf-8")

    def _close(self, split: str) -> None:
        for handle in self.open.pop(split, {}).values():
            handle.close()
        self.rows_in_shard[split] = 0

    def close(self) -> dict[str, dict[str, list[Path]]]:
        """Flush, close, rename; returns split -> kind -> files."""
        for split in list(self.buffers):
            self._flush(split)
            self._close(split)
        out: dict[str, dict[str, list[Path]]] = {}
        for split, shards in self.shards.items():
            for i, paths in enumerate(shards):
                for kind, path in paths.items():
                    final = path.with_name(f"{split}-{i:05d}-of-{len(shards):05d}.{kind}")
                    path.rename(final)
                    out.setdefault(split, {}).setdefault(kind, []).append(final)
        return out


@dataclass
class ExportSummary:
    out: str
    format: str
    label: str
    rows: int
    solutions: int
    steps: int
    positive_steps: int
    splits: dict[str, int]
    files: list[str]
    hf_path: str | None
    card: str
    stats: dict[str, int] = field(default_factory=dict)
    run_id: str | None = None


_PROBLEM_PARAMS = ("datasets", "splits", "include_eval")  # export_problems.sql's; the rest are export_solutions.sql's


def export_params(config: ExportConfig) -> dict[str, Any]:
    return {"datasets": list(config.datasets), "splits": list(config.splits), "strategy": config.strategy,
            "completer": config.completer, "include_eval": config.include_eval, "measured_only": config.measured_only,
            "min_rollouts": config.min_rollouts, "label": config.label, "se_threshold": config.se_threshold,
            "pav_k": config.pav_k, "pav_alpha": config.pav_alpha}


def selected_problems(store: Store, config: ExportConfig) -> pa.Array:
    """The ids of the problems the export reads, sorted (compact Arrow strings)."""
    params = {k: v for k, v in export_params(config).items() if k in _PROBLEM_PARAMS}
    return store.arrow(internal_sql("export_problems"), params).column("problem_id").combine_chunks()


def solution_batches(store: Store, problem_ids: pa.Array, config: ExportConfig, params: dict[str, Any],
                     chunk_done: Callable[[int, list[str]], None] = lambda problems, solution_ids: None,
                     ) -> Iterator[list[dict[str, Any]]]:
    """The exported solutions' rows, in export order, as record batches: one query per chunk of
    ``problems_per_query`` problems. After each chunk, ``chunk_done(problems, solution_ids)``."""
    sql = internal_sql("export_solutions")
    solution_params = {k: v for k, v in params.items() if k not in _PROBLEM_PARAMS}
    for start in range(0, len(problem_ids), config.problems_per_query):
        chunk = problem_ids.slice(start, config.problems_per_query)
        bounds = {"first_problem": chunk[0].as_py(), "last_problem": chunk[-1].as_py()}  # ids come sorted
        exported: list[str] = []
        for batch in store.stream(sql, {**solution_params, **bounds}, rows_per_batch=min(config.shard_rows, 10_000),
                                  tables={"export_chunk": pa.table({"problem_id": chunk})}):
            exported += [row["solution_id"] for row in batch]
            yield batch
        chunk_done(len(chunk), exported)


def provenance_of(store: Store, solution_ids: list[str]) -> list[dict[str, Any]]:
    """The card's provenance rows of these exported solutions (``export_provenance.sql``)."""
    if not solution_ids:
        return []
    return store.query(internal_sql("export_provenance"),
                       tables={"export_ids": pa.table({"solution_id": solution_ids})}).as_dicts()


def merge_provenance(parts: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Provenance rows of disjoint chunks as one: per (kind, strategy, model, params, budget) the
    union of run ids and the sum of solutions (a solution belongs to one chunk: its problem's)."""
    merged: dict[tuple, dict[str, Any]] = {}
    for row in parts:
        key = (row["kind"], row["strategy"], row["model"], row["params"], row["budget"])
        into = merged.setdefault(key, {**row, "run_ids": [], "solutions": 0})
        into["run_ids"] = sorted(set(into["run_ids"]) | set(row["run_ids"]))
        into["solutions"] += row["solutions"]
    return sorted(merged.values(), key=lambda r: (r["kind"], r["model"] or "", r["params"] or ""))


def export_dataset(store: Store, config: ExportConfig, command: str = "prmf export",
                   run_id: str | None = None) -> ExportSummary:
    """Write the export to ``config.out`` (which must not exist or be empty)."""
    out = Path(config.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"{out} exists and is not an empty folder: choose a new --out")
    if config.format == "openrlhf" and config.openrlhf_soft and config.label == "gold":
        raise ExportError("--label gold has no soft values: drop --openrlhf-soft")
    check = PlaceholderCheck(config.tokenizer, config.placeholder) if (
        config.format == "openrlhf" and config.tokenizer) else None
    staging = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    params = export_params(config)
    problem_ids = selected_problems(store, config)
    stats: Counter = Counter()
    split_rows: Counter = Counter()
    provenance: list[dict[str, Any]] = []  # per chunk; merged for the card
    kinds = tuple(k for k in ("parquet", "jsonl") if k in config.outputs) or ("parquet",)
    writer = ShardWriter(staging, schema(config), kinds, config.shard_rows)
    try:
        with progress(f"export {config.format} (problems)", len(problem_ids)) as advance:
            def chunk_done(problems: int, solution_ids: list[str]) -> None:
                provenance.extend(provenance_of(store, solution_ids))
                advance(problems)

            def rows() -> Iterator[dict[str, Any]]:
                for batch in solution_batches(store, problem_ids, config, params, chunk_done):
                    yield from batch

            for split, record in encode_rows(rows(), config, stats, check):
                writer.add(split, record)
                split_rows[split] += 1
        files = writer.close()
        if not files:
            raise ExportError("nothing to export: no solution of the selection has a label of the kind asked for "
                              "on every step (check --dataset, --split, --label and the filters)")
        hf_path = _save_hf(staging, files) if "hf" in config.outputs else None
        if "parquet" not in config.outputs:
            for split_files in files.values():
                for path in split_files.pop("parquet", []):
                    path.unlink()
        provenance = merge_provenance(provenance)
        summary = ExportSummary(
            str(out), config.format, config.label, stats["rows"], stats["solutions"], stats["steps"],
            stats["positive_steps"], dict(split_rows),
            sorted(str(p.relative_to(staging)) for s in files.values() for ps in s.values() for p in ps),
            "hf" if hf_path else None, "README.md", dict(stats), run_id)
        (staging / "README.md").write_text(dataset_card(summary, config, provenance, files, command))
        (staging / "export.json").write_text(json.dumps(asdict(summary), indent=1))
        staging.rename(out) if not out.exists() else _move_into(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return summary


def _move_into(staging: Path, out: Path) -> None:
    for child in staging.iterdir():
        child.rename(out / child.name)
    staging.rmdir()


def _save_hf(folder: Path, files: dict[str, dict[str, list[Path]]]) -> Path:
    """A DatasetDict (one dataset per split) from the Parquet shards, saved with save_to_disk."""
    import datasets

    datasets.disable_progress_bars()
    cache = folder / ".cache"
    splits = {split: datasets.Dataset.from_parquet([str(p) for p in kinds["parquet"]], cache_dir=str(cache))
              for split, kinds in files.items()}
    path = folder / "hf"
    datasets.DatasetDict(splits).save_to_disk(str(path))
    shutil.rmtree(cache, ignore_errors=True)
    return path


FORMAT_NOTES = {
    "trl": "TRL stepwise supervision (`trl.experimental.prm.PRMTrainer`): `prompt`, `completions` (one string per "
           "step), `labels` (one bool per step). TRL casts each label with `int()`, which would truncate a soft "
           "label to 0, so `labels` holds the hard label and `soft_labels` the soft value (None where there is none).",
    "math-shepherd": "Math-Shepherd (`peiyi9979/Math-Shepherd`, distilabel `FormatPRM`): `input` is the question, a "
                     "space and the steps joined by newlines, each `Step i: <text> ки`; `label` is the same text with "
                     "`+` (correct) or `-` in place of each `ки`.",
    "openrlhf": "OpenRLHF process reward (`ProcessRewardDataset`): `input` has the placeholder after each step, "
                "`label` one entry per placeholder. Train with `--input_key input --label_key label "
                "--placeholder_token <placeholder> --reward_tokens + -` (omit --reward_tokens for float labels).",
    "pairs": "Preference pairs per problem (TRL DPO-style `prompt`, `chosen`, `rejected`): `chosen` is a correct "
             "solution with no wrong step, `rejected` one with a wrong step (earliest first errors first); "
             "`rejected_first_error` is its 0-based index.",
    "processbench": "ProcessBench-style earliest-error records: `steps`, `final_answer_correct`, `label` = the "
                    "0-based index of the first wrong step, -1 when every step is correct.",
}

LABEL_NOTES = {
    "he": "hard estimate HE (a step is correct when any rollout from its prefix reached the gold answer); soft "
          "value SE (the fraction that did); the final step is the solution's own correctness",
    "se": "SE >= {se_threshold} (soft value SE, the fraction of rollouts from the prefix that reached the gold "
          "answer)",
    "pav": "PAV: the Best-of-{pav_k} prover's advantage A = Q_mu(h) - Q_mu(h-1) >= 0 (soft value A; alpha "
           "{pav_alpha} for the effective reward Q + alpha A)",
    "gold": "arith's exact gold step labels (no soft value)",
}


def dataset_card(summary: ExportSummary, config: ExportConfig, provenance: list[dict[str, Any]],
                 files: dict[str, dict[str, list[Path]]], command: str) -> str:
    from tasks.runs import code_version

    configs = ["configs:", "- config_name: default", "  data_files:"]
    for split, kinds in files.items():
        shards = kinds.get("parquet") or kinds.get("jsonl") or []
        ext = shards[0].suffix if shards else ".parquet"
        configs += [f"  - split: {split}", f"    path: data/{split}-*{ext}"]
    rate = summary.positive_steps / summary.steps if summary.steps else 0.0
    lines = ["---", *configs, "tags:", "- process-reward-model", "- prm-factory", "---", "",
             f"# Step labels exported by prm-factory ({config.format})", "",
             FORMAT_NOTES[config.format], "",
             f"Labels: {LABEL_NOTES[config.label].format(**config.model_dump())}.", "",
             "## Counts", "",
             "| split | rows |", "|---|---|", *[f"| {s} | {n} |" for s, n in sorted(summary.splits.items())], "",
             f"{summary.solutions} solutions, {summary.steps} steps, {summary.positive_steps} labelled correct "
             f"({rate:.1%}); {summary.stats.get('solutions_with_a_wrong_step', 0)} solutions have a wrong step.", "",
             "## Selection", "",
             f"- datasets: {', '.join(config.datasets) or 'all'}; splits: {', '.join(config.splits) or 'all but test'}",
             f"- strategy: {config.strategy or 'any'}; completer: {config.completer or 'any (estimates pooled)'}",
             f"- measured only: {config.measured_only}; min rollouts: {config.min_rollouts}; after the first error: "
             f"{config.after_first_error}; evaluation questions included: {config.include_eval}", "",
             "## Provenance", "",
             "| what | strategy | model | sampling | budget | solutions | runs |", "|---|---|---|---|---|---|---|"]
    for p in provenance:
        lines.append(f"| {p['kind']} | {p['strategy'] or ''} | {p['model']} | `{p['params']}` | {p['budget'] or ''} "
                     f"| {p['solutions']} | {', '.join(p['run_ids'])} |")
    lines += ["", f"Export run: `{summary.run_id}`  " if summary.run_id else "", f"Code version: `{code_version()}`  ", f"Exported: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC  ",
              f"Command: `{command}`", "", "## Loading", "", "```python",
              "import datasets",
              f"ds = datasets.load_from_disk(\"{Path(config.out).name}/hf\")  # or:",
              f"ds = datasets.load_dataset(\"parquet\", data_dir=\"{Path(config.out).name}/data\")", "```", ""]
    return "\n".join(lines)
