"""Export benchmark: does ``prmf export`` bound its memory? (``prmf bench export``)

A synthetic labelled store (``sql/internal/bench_export_store.sql``: problems x solutions x steps,
every non-final prefix rolled out) is exported three ways, each in its own process so its peak
resident memory is its own:

* ``in-memory`` (the baseline): one query over every problem, the whole result fetched at once,
  encoded, written as one table;
* ``one-query``: one query over every problem, streamed in Arrow record batches into Parquet
  shards (DuckDB still aggregates the whole store before the first batch);
* ``chunked`` (what ``prmf export`` does): the same stream, one query per ``problems_per_query``
  problems, so DuckDB aggregates one chunk at a time.

Figures: exported rows and steps, seconds, steps per second, peak RSS. Timed assertions never go
into tests; this is where the memory claim is measured.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

VARIANTS = ("in-memory", "one-query", "chunked")


def fresh_store(workdir: Path, name: str, problems: int, solutions: int, steps: int, rollouts: int
                ) -> tuple[Path, dict[str, int], float]:
    """A new synthetic store ``workdir/name`` (a previous one there is removed): its path, table
    sizes and build seconds. ``prmf bench export`` and ``prmf bench store`` both start here."""
    workdir.mkdir(parents=True, exist_ok=True)
    db = workdir / name
    for stale in (db, db.with_suffix(".duckdb.wal")):
        stale.unlink(missing_ok=True)
    started = time.perf_counter()
    sizes = build_store(db, problems, solutions, steps, rollouts)
    return db, sizes, time.perf_counter() - started


def build_store(db: Path, problems: int, solutions: int, steps: int, rollouts: int) -> dict[str, int]:
    """The synthetic store (a new file); returns its table sizes."""
    from tasks.store import Store, internal_sql

    if db.exists():
        raise FileExistsError(f"{db} exists: the benchmark builds a new store")
    with Store(db) as store:
        for name, value in (("bench_problems", problems), ("bench_solutions", solutions), ("bench_steps", steps),
                            ("bench_rollouts", rollouts)):
            store.con.execute(f"SET VARIABLE {name} = {int(value)}")
        store.con.execute(internal_sql("bench_export_store"))  # several statements, run as migrations are
        return {t: store.scalar(f"SELECT count(*) FROM {t}") for t in ("solutions", "steps", "rollouts")}


def run_variant(variant: str, db: Path, out: Path, problems_per_query: int = 2_000) -> dict[str, Any]:
    """Export ``db`` to ``out`` as ``variant``; figures of this process."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tasks.config import ExportConfig
    from tasks.interchange.export import (
        encode_rows,
        export_dataset,
        export_params,
        schema,
        selected_problems,
        solution_batches,
    )
    from tasks.store import Store

    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    config = ExportConfig(db=db, out=out, outputs=("parquet",), shard_rows=50_000,
                          problems_per_query=problems_per_query if variant == "chunked" else 10**9)
    started = time.perf_counter()
    with Store(db, read_only=True) as store:
        if variant == "in-memory":
            everything = [row for batch in solution_batches(store, selected_problems(store, config), config,
                                                            export_params(config)) for row in batch]
            stats: Counter = Counter()
            records = [record for _, record in encode_rows(everything, config, stats)]
            out.mkdir(parents=True)
            pq.write_table(pa.Table.from_pylist(records, schema=schema(config)), out / "train.parquet")
            rows, steps = stats["rows"], stats["steps"]
        else:
            summary = export_dataset(store, config, "prmf bench export")
            rows, steps = summary.rows, summary.steps
    seconds = time.perf_counter() - started
    return {"variant": variant, "rows": rows, "steps": steps, "seconds": seconds, "steps_per_s": steps / seconds,
            "peak_rss_mb": peak_rss_mb()}


def peak_rss_mb() -> float:
    """This process's peak resident memory. Linux's ``VmHWM`` is per address space, so it starts
    afresh at exec; ``ru_maxrss`` does not: a child's starts at its parent's RSS at fork (here the
    parent that built a multi-GB store), which would hide what the variant itself used."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux; no /proc elsewhere


def compare(workdir: Path, problems: int, solutions: int, steps: int, rollouts: int,
            problems_per_query: int = 2_000) -> dict[str, Any]:
    """Build the store, then run every variant in a fresh process, baseline (in-memory) first."""
    db, sizes, build_s = fresh_store(workdir, "bench-export.duckdb", problems, solutions, steps, rollouts)
    results = []
    for variant in VARIANTS:
        out = workdir / f"out-{variant}"
        subprocess.run(["rm", "-rf", str(out)], check=True)
        proc = subprocess.run([sys.executable, "-m", "tasks.bench_export", variant, str(db), str(out),
                               str(problems_per_query)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"variant {variant} failed: {proc.stderr.strip()[-2000:]}")
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return {"store": sizes, "build_s": build_s, "results": results}


if __name__ == "__main__":  # one variant, in its own process (see compare)
    print(json.dumps(run_variant(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]))))
