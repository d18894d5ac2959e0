"""prmf bench scale, small: the baseline (one process on a DuckDB file) and the same job on a
DuckLake in a PostgreSQL the benchmark starts itself; the figures it reports are the ones the
stores hold, and both variants did the same work."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tasks.store import Store


@pytest.mark.engine
def test_bench_scale_reports_what_each_variant_stored_and_that_they_did_the_same_work(tmp_path):
    workdir = tmp_path / "bench"
    command = [sys.executable, "-m", "flows.cli", "bench", "scale", "--variants", "file-local,lake-local",
               "--problems", "2", "--solutions", "1", "--rollouts", "2", "--workdir", str(workdir), "--json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PREFECT_HOME": str(tmp_path / "prefect")})
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    file, lake = report["results"]
    assert (file["variant"], lake["variant"]) == ("file-local", "lake-local")
    assert file["wall_ratio"] == 1.0 and lake["wall_ratio"] == lake["wall_s"] / file["wall_s"]
    assert file["same_work"] and lake["same_work"]
    # The baseline's store (kept in the work folder) holds exactly the work it reported.
    with Store(workdir / "file-local.duckdb", read_only=True) as store:
        assert store.scalar("SELECT count(*) FROM work_units") == file["labelled_steps"] > 0
        assert store.scalar("SELECT count(*) FROM rollouts") == file["rollouts"] == 2 * file["labelled_steps"]
        assert store.scalar("SELECT sum(tokens_generated) FROM runs WHERE flow_name = 'label'") == file["tokens"]
    assert file["steps_per_s"] == pytest.approx(file["labelled_steps"] / file["wall_s"])
