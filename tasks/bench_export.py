"""Export benchmark: does ``prmf export`` stream? (``prmf bench export``)

A synthetic labelled store (``sql/internal/bench_export_store.sql``: problems x solutions x steps,
every non-final prefix rolled out) is exported twice, each variant in its own process so its
peak resident memory is its own:

* ``streamed`` (what ``prmf export`` does): Arrow record batches from DuckDB, encoded row by row
  into Parquet shards;
* ``in-memory`` (the baseline): the whole result fetched at once, encoded, written as one table.

Figures: exported rows and steps, seconds, steps per second, peak RSS. Timed assertions never go
into tests; this is where the streaming claim is measured.
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

VARIANTS = ("streamed", "in-memory")


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


def run_variant(variant: str, db: Path, out: Path) -> dict[str, Any]:
    """Export ``db`` to ``out`` as ``variant``; figures of this process."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tasks.config import ExportConfig
    from tasks.interchange.export import encode_rows, export_dataset, export_params, schema
    from tasks.store import Store, internal_sql

    config = ExportConfig(db=db, out=out, outputs=("parquet",), shard_rows=50_000)
    started = time.perf_counter()
    with Store(db, read_only=True) as store:
        if variant == "streamed":
            summary = export_dataset(store, config, "prmf bench export")
            rows, steps = summary.rows, summary.steps
        elif variant == "in-memory":
            everything = store.query(internal_sql("export_solutions"), export_params(config)).as_dicts()
            stats: Counter = Counter()
            records = [record for _, record in encode_rows(everything, config, stats)]
            out.mkdir(parents=True)
            pq.write_table(pa.Table.from_pylist(records, schema=schema(config)), out / "train.parquet")
            rows, steps = stats["rows"], stats["steps"]
        else:
            raise ValueError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    seconds = time.perf_counter() - started
    return {"variant": variant, "rows": rows, "steps": steps, "seconds": seconds, "steps_per_s": steps / seconds,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def compare(workdir: Path, problems: int, solutions: int, steps: int, rollouts: int) -> dict[str, Any]:
    """Build the store, then run every variant in a fresh process, baseline (in-memory) first."""
    workdir.mkdir(parents=True, exist_ok=True)
    db = workdir / "bench-export.duckdb"
    for stale in (db, db.with_suffix(".duckdb.wal")):
        stale.unlink(missing_ok=True)
    started = time.perf_counter()
    sizes = build_store(db, problems, solutions, steps, rollouts)
    build_s = time.perf_counter() - started
    results = []
    for variant in ("in-memory", "streamed"):
        out = workdir / f"out-{variant}"
        subprocess.run(["rm", "-rf", str(out)], check=True)
        proc = subprocess.run([sys.executable, "-m", "tasks.bench_export", variant, str(db), str(out)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"variant {variant} failed: {proc.stderr.strip()[-2000:]}")
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return {"store": sizes, "build_s": build_s, "results": results}


if __name__ == "__main__":  # one variant, in its own process (see compare)
    print(json.dumps(run_variant(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]))))
