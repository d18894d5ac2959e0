"""`prmf label --executor ray`: label shards on a real Ray cluster (a head and a second node, both on
127.0.0.1, started here) through Prefect's Ray task runner, each shard with its own vLLM-CPU
engine, into one real DuckDB file; one shard's worker is killed mid-shard."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from tasks.labelling.shards import partition, shard_count, shard_of, shard_resources
from tasks.config import ExecutorSettings
from tasks.doctor import check_store
from tasks.store import Store, StoreError

RAY = Path(sys.executable).with_name("ray")
# A loopback-only test cluster without token authentication, whatever ~/.ray holds.
RAY_ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}


def test_shards_are_a_fixed_partition_by_problem_id():
    ids = [f"arith-test-{i}" for i in range(40)]
    parts = partition(ids, 3)
    assert sorted(p for part in parts for p in part) == sorted(ids)  # each problem in exactly one shard
    assert all(len(part) > 0 for part in parts)
    # A problem's shard does not depend on which other problems a run selected, or their order.
    assert partition(list(reversed(ids[:7])), 3) == [[p for p in reversed(ids[:7]) if shard_of(p, 3) == i]
                                                      for i in range(3)]
    with pytest.raises(ValueError):
        partition(ids, 0)


def test_shard_count_and_resources_follow_the_cluster():
    gpu_cluster, cpu_cluster = {"CPU": 32.0, "GPU": 4.0}, {"CPU": 5.0}
    assert shard_count(ExecutorSettings(kind="ray"), gpu_cluster) == 4
    assert shard_count(ExecutorSettings(kind="ray", shards_per_gpu=2), gpu_cluster) == 8
    assert shard_count(ExecutorSettings(kind="ray"), cpu_cluster) == 2  # one CPU engine per 2 CPUs
    assert shard_count(ExecutorSettings(kind="ray", shards=7), gpu_cluster) == 7
    assert shard_resources(ExecutorSettings(kind="ray", shards_per_gpu=2), gpu_cluster) == {
        "num_cpus": 1.0, "max_retries": 2, "num_gpus": 0.5}
    assert "num_gpus" not in shard_resources(ExecutorSettings(kind="ray"), cpu_cluster)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_cluster():
    """A Ray head and a second node on this machine, 1 CPU each, bound to 127.0.0.1."""
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths live under it
    port = _free_port()
    env = RAY_ENV
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--num-gpus=0", "--object-store-memory=100000000",
              "--disable-usage-stats"]
    try:
        subprocess.run([str(RAY), "start", "--head", f"--port={port}", "--include-dashboard=false",
                        f"--temp-dir={temp}", *common], env=env, check=True, capture_output=True, timeout=180)
        subprocess.run([str(RAY), "start", f"--address=127.0.0.1:{port}", *common], env=env, check=True,
                       capture_output=True, timeout=180)
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([str(RAY), "stop", "--force"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(temp, ignore_errors=True)


def _counts(db: Path) -> dict[str, int]:
    """The store's units and rollouts, and what the stored solutions say they must be."""
    with Store(db, read_only=True) as store:
        return dict(zip(["units", "rollouts", "unit_n", "unit_k", "prefixes", "wrong_units", "solutions"], store.query("""
            SELECT (SELECT count(*) FROM work_units),
                   (SELECT count(*) FROM rollouts),
                   (SELECT sum(n) FROM work_units),
                   (SELECT sum(k) FROM work_units),
                   (SELECT count(DISTINCT (s.problem_id, st.prefix_hash)) FROM steps st
                    JOIN solutions s USING (solution_id) WHERE st.step_index < s.num_steps),
                   (SELECT count(*) FROM work_units u WHERE u.n <> (SELECT count(*) FROM rollouts r
                                                                     WHERE r.unit_id = u.unit_id)),
                   (SELECT count(*) FROM solutions)
        """).rows[0]))


def _stored_units(db: Path) -> int:
    try:
        with Store(db, read_only=True, wait_s=0.2) as store:
            return store.scalar("SELECT count(*) FROM work_units")
    except StoreError:  # the file is held by a writer, or not made yet
        return 0


def _shard_workers() -> list[int]:
    """Ray worker processes running a label shard (Ray titles them ray::<task name>)."""
    out = subprocess.run(["pgrep", "-f", "ray::label-shard"], capture_output=True, text=True).stdout
    return [int(pid) for pid in out.split()]


def test_shards_on_a_ray_cluster_store_each_unit_once_even_when_a_worker_dies(ray_cluster, tmp_path):
    db = tmp_path / "store.duckdb"
    # No Prefect server: the run's ephemeral API, which the shards in the Ray workers report to.
    env = {**RAY_ENV, "PRMF_DB": str(db), "PREFECT_HOME": str(tmp_path / "prefect"), "PRMF_FAULT": ""}
    env.pop("PREFECT_API_URL", None)
    command = [sys.executable, "-m", "flows.cli", "label", "--dataset", "arith", "--limit", "6", "-m", "2",
               "-n", "2", "--batch-prefixes", "3", "--max-tokens", "64", "--rollout-max-tokens", "24", "--executor",
               "ray", "--ray-address", ray_cluster, "--shards", "2", "--lease-s", "6", "--json"]
    run = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           cwd=Path(__file__).parents[1])
    killed: list[int] = []

    def kill_one_worker_mid_shard():
        deadline = time.monotonic() + 330
        while run.poll() is None and time.monotonic() < deadline:
            workers = _shard_workers()
            if workers and _stored_units(db) > 0:  # a shard has stored some of its work, not all
                os.kill(workers[0], signal.SIGKILL)
                killed.append(workers[0])
                return
            time.sleep(0.5)

    killer = threading.Thread(target=kill_one_worker_mid_shard, daemon=True)
    killer.start()
    try:
        out, err = run.communicate(timeout=360)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    killer.join()
    assert run.returncode == 0, err[-3000:]
    summary = json.loads(out)
    assert killed, "no shard worker was found running with work stored"
    shards = summary["shards"]
    assert sorted(s["shard"] for s in shards) == [0, 1] and sum(s["problems"] for s in shards) == 6
    # Each shard ran in a Ray worker, not in the driver; the killed worker finished nothing.
    assert run.pid not in {s["pid"] for s in shards} and killed[0] not in {s["pid"] for s in shards}

    counts = _counts(db)
    assert counts["solutions"] > 0 and counts["units"] == counts["prefixes"]  # every non-final prefix, once
    assert counts["rollouts"] == counts["unit_n"] == 2 * counts["units"] and counts["wrong_units"] == 0

    # The same run again computes nothing and changes nothing.
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=Path(__file__).parents[1])
    assert again.returncode == 0, again.stderr[-3000:]
    rerun = json.loads(again.stdout)
    assert rerun["prefixes_labelled_now"] == 0 and sum(s["units_labelled"] for s in rerun["shards"]) == 0
    assert _counts(db) == counts
    failed = [c for c in check_store(db) if not c.ok]  # prmf doctor's store checks
    assert not failed, failed
