"""Scale-out benchmark: what do the distributed paths cost? (``prmf bench scale``)

The same label job (same problems, seeds and settings, so the same work) runs once per variant,
each a real ``prmf label`` process on a fresh store, timed from start to finish:

* ``file-local`` (the baseline): one process, the DuckDB file store;
* ``file-ray-1`` / ``file-ray-2``: ``--executor ray`` with 1 and 2 shards on a Ray instance of the
  run's own on 127.0.0.1, the DuckDB file store;
* ``lake-local`` / ``lake-ray-2``: the same on a DuckLake catalogued in a PostgreSQL the benchmark
  starts on 127.0.0.1 (data files in the work folder).

Figures: wall seconds of the whole command (process, engines, Prefect, store), labelled steps per
second and generated tokens per second, each against the baseline, and whether each variant did
the baseline's work (labelled steps and rollouts). On a 2-core machine shards
share the cores, so little speed-up is expected: what this measures is the overhead of each path.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

VARIANTS: dict[str, dict[str, Any]] = {
    "file-local": {"store": "file", "args": []},
    "file-ray-1": {"store": "file", "args": ["--executor", "ray", "--shards", "1"]},
    "file-ray-2": {"store": "file", "args": ["--executor", "ray", "--shards", "2"]},
    "lake-local": {"store": "lake", "args": []},
    "lake-ray-2": {"store": "lake", "args": ["--executor", "ray", "--shards", "2"]},
}


def run(variants: list[str], problems: int, solutions: int, rollouts: int, workdir: Path,
        progress: Any = print) -> dict[str, Any]:
    from tasks.postgres import temporary_postgres

    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    job = ["--dataset", "arith", "--limit", str(problems), "--solutions", str(solutions), "--rollouts", str(rollouts),
           "--max-tokens", "96", "--rollout-max-tokens", "48", "--json"]
    results = []
    needs_lake = any(VARIANTS[v]["store"] == "lake" for v in variants)
    with temporary_postgres() if needs_lake else nullcontext() as postgres:
        for variant in variants:
            spec = VARIANTS[variant]
            env = {**os.environ, "PREFECT_HOME": str(workdir / f"prefect-{variant}"), "PRMF_FAULT": ""}
            if spec["store"] == "lake":
                db = postgres.create_database(variant.replace("-", "_"))
                env["PRMF_LAKE_DATA_PATH"] = str(workdir / f"{variant}-data")
            else:
                db = str(workdir / f"{variant}.duckdb")
            progress(f"{variant}: prmf label {' '.join(spec['args'])} on {spec['store']}")
            started = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "flows.cli", "label", *job, *spec["args"], "--db", db],
                                  env=env, capture_output=True, text=True)
            wall = time.perf_counter() - started
            if done.returncode != 0:
                raise RuntimeError(f"{variant} failed (exit {done.returncode}): {done.stderr[-3000:]}")
            summary = json.loads(done.stdout)
            steps = summary["prefixes_labelled_now"]
            tokens = summary["tokens_generated"]
            results.append({"variant": variant, "wall_s": wall, "labelled_steps": steps, "rollouts": summary["rollouts"],
                            "tokens": tokens, "steps_per_s": steps / wall, "tokens_per_s": tokens / wall,
                            "shards": len(summary.get("shards") or []) or None})
            progress(f"  {steps} labelled steps, {tokens} tokens in {wall:.1f} s")
    base = results[0]
    for r in results:
        r["wall_ratio"] = r["wall_s"] / base["wall_s"]
        r["steps_per_s_ratio"] = r["steps_per_s"] / base["steps_per_s"] if base["steps_per_s"] else None
        # Seeded runs of one job do the same work; if not, the ratios compare different jobs.
        r["same_work"] = (r["labelled_steps"], r["rollouts"]) == (base["labelled_steps"], base["rollouts"])
    return {"config": {"problems": problems, "solutions": solutions, "rollouts": rollouts, "cpus": os.cpu_count()},
            "results": results}
