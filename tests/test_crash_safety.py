"""Crash safety with real faults: a real label run in a subprocess is SIGKILLed at injected
checkpoints (after a stored generation batch, inside a label transaction, between sampling and
storing); rerunning the same command completes the job with the exact rollout count and no
duplicates. Kills at arbitrary moments are in tests/test_ray_executor.py (a shard's worker, once
units are stored) and tests/test_server_faults.py (the server, mid-run). Bounded: each run has a
300 s limit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tasks.store import Store

pytestmark = pytest.mark.engine

N = 3
COMMAND = [sys.executable, "-m", "flows.cli", "label", "--dataset", "arith", "--limit", "4", "--solutions", "2",
           "--rollouts", str(N), "--batch-prefixes", "2", "--max-tokens", "64", "--rollout-max-tokens", "24"]


def run_label(db, tmp_path, fault: str | None = None) -> int:
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PRMF_FAULT": fault or ""}
    log = tmp_path / "label.log"
    # A file, not a pipe: the engine process of a killed run may outlive it holding the pipe open.
    with log.open("w") as stderr:
        proc = subprocess.Popen(COMMAND + ["--db", str(db)], env=env, stdout=subprocess.DEVNULL, stderr=stderr,
                                start_new_session=True)
    try:
        proc.wait(timeout=300)
        if fault:  # killed itself: its engine processes must not outlive it (they would hold a GPU)
            survivors = survivors_of(proc.pid)
            assert survivors == [], f"processes outlived the killed run: {survivors}"
    finally:
        # The whole process group: the run (if still alive) and its vLLM engine processes.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)
    if fault is None:
        assert proc.returncode == 0, log.read_text()[-3000:]
    time.sleep(1)
    return proc.returncode


def survivors_of(session: int, grace_s: float = 20.0) -> list[tuple[int, str]]:
    """Processes still in the run's session after the guard has had time to act."""
    import psutil

    deadline = time.monotonic() + grace_s
    while True:
        alive = [(p.pid, _describe(p)) for p in psutil.process_iter() if _session(p) == session and _describe(p)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.5)


def _describe(process) -> str | None:
    """Command line of a live process; None for zombies (dead, awaiting reaping) and vanished ones."""
    import psutil

    try:
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return " ".join(process.cmdline())[:120]
    except psutil.Error:
        return None


def _session(process) -> int | None:
    try:
        return os.getsid(process.pid)
    except (ProcessLookupError, PermissionError):
        return None


def assert_consistent(db) -> dict[str, int]:
    """Whatever the crash point: no unit half-stored, no duplicate, steps belong to solutions."""
    with Store(db) as store:  # writable open: replays DuckDB's WAL like the next run would
        partial = store.query(
            "SELECT u.unit_id, count(r.rollout_id) FROM work_units u LEFT JOIN rollouts r USING (unit_id) "
            "GROUP BY 1 HAVING count(r.rollout_id) <> ?", [N]).rows
        assert partial == []
        assert store.scalar("SELECT count(*) - count(DISTINCT (unit_id, sample_index)) FROM rollouts") == 0
        assert store.scalar("SELECT count(*) FROM steps WHERE solution_id NOT IN (SELECT solution_id FROM solutions)") == 0
        assert store.scalar("SELECT count(*) FROM solutions s WHERE num_steps <> "
                            "(SELECT count(*) FROM steps st WHERE st.solution_id = s.solution_id)") == 0
        return {
            "rollouts": store.scalar("SELECT count(*) FROM rollouts"),
            "units": store.scalar("SELECT count(*) FROM work_units"),
            "expected_units": store.scalar(
                "SELECT count(DISTINCT (s.problem_id, st.prefix_hash)) FROM steps st JOIN solutions s USING "
                "(solution_id) WHERE st.step_index < s.num_steps"),
        }


def test_sigkill_at_any_point_then_rerun_completes_exactly(tmp_path):
    db = tmp_path / "crash.duckdb"

    assert run_label(db, tmp_path, fault="generate-batch-stored:1") == -signal.SIGKILL
    after_generation = assert_consistent(db)
    assert after_generation["units"] == 0 and after_generation["expected_units"] > 0

    assert run_label(db, tmp_path, fault="label-in-transaction:2") == -signal.SIGKILL
    mid_write = assert_consistent(db)
    assert mid_write["units"] == 2  # the first batch committed; the second rolled back whole

    assert run_label(db, tmp_path, fault="label-batch-generated:1") == -signal.SIGKILL
    assert assert_consistent(db)["units"] == 2  # sampled but unstored rollouts are redone, never half-kept

    run_label(db, tmp_path)
    final = assert_consistent(db)
    assert final["units"] == final["expected_units"] > 2
    assert final["rollouts"] == N * final["expected_units"]
    with Store(db, read_only=True) as store:
        statuses = [s for (s,) in store.query("SELECT status FROM runs ORDER BY started_at").rows]
        assert statuses[-1] == "completed"
        assert statuses[:3] == ["crashed"] * 3  # each rerun marked the killed run before it
        assert store.scalar("SELECT count(DISTINCT problem_id) FROM solutions") == 4
        assert store.scalar("SELECT count(*) FROM generations") == 4  # generation was never redone


STRATEGY = "binary_search+early_stop+reuse"
LABELS = {  # what a run stores, as comparable sets of rows
    "solutions": "SELECT problem_id, generator_model, text, correct FROM solutions",
    "units": "SELECT unit_id, step_index, round, n FROM work_units",
    "rollouts": "SELECT unit_id, sample_index, text, correct FROM rollouts",
    "estimates": "SELECT solution_id, step_index, source, he, se, n, implied_by_step FROM step_estimates",
    "markers": "SELECT solution_id, label_key, measured_steps, inferred_steps, open_steps, contradictions "
               "FROM labelled_solutions",
    "reused": "SELECT solution_id, rollout_id, parent_step FROM reused_rollouts",
}


def test_sigkill_mid_strategy_then_rerun_stores_the_same_labels_as_an_uninterrupted_run(tmp_path):
    """binary_search+early_stop+reuse, killed after its second stored batch (one prefix per batch,
    so mid-round and mid-bisection), then rerun: every solution finishes, the units stored are
    exactly those the strategy asks for given the stored rollouts (replayed), the doctor's checks
    pass, and, because every request is seeded by its key, the store holds exactly what an
    uninterrupted run of the same command stores: the same solutions, units, rollout texts,
    estimates, reused rollouts and markers."""
    from tasks.doctor import check_store
    from tests.helpers import replay_strategy, stored_units

    command = [sys.executable, "-m", "flows.cli", "label", "--dataset", "arith", "--limit", "2", "--solutions", "2",
               "--rollouts", str(N), "--strategy", STRATEGY, "--batch-prefixes", "1",
               "--max-tokens", "64", "--rollout-max-tokens", "24"]
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PRMF_FAULT": ""}
    whole, db = tmp_path / "uninterrupted.duckdb", tmp_path / "strategy.duckdb"
    uninterrupted = subprocess.run(command + ["--db", str(whole)], env=env, capture_output=True, text=True, timeout=300)
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-3000:]

    killed = subprocess.run(command + ["--db", str(db)], env={**env, "PRMF_FAULT": "label-batch-stored:2"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
    assert killed.returncode == -signal.SIGKILL
    with Store(db) as store:
        assert store.scalar("SELECT count(*) FROM work_units") == 2
    rerun = subprocess.run(command + ["--db", str(db)], env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert [c.name for c in check_store(db) if not c.ok] == []
    with Store(db, read_only=True) as store, Store(whole, read_only=True) as reference:
        assert replay_strategy(store, STRATEGY, N) == stored_units(store)
        assert store.scalar("SELECT count(*) FROM labelled_solutions") == store.scalar("SELECT count(*) FROM solutions")
        assert store.scalar("SELECT count(*) FROM step_labels") > 0
        assert store.scalar("SELECT count(*) FROM reused_rollouts") > 0
        for name, sql in LABELS.items():
            assert set(store.query(sql).rows) == set(reference.query(sql).rows), name


def test_training_killed_midway_registers_nothing_and_a_rerun_completes(tmp_path):
    """SIGKILL during `prmf train`: no model is registered, no checkpoint is left in place (only
    a staging folder), and the same command then trains and registers one model and removes the
    abandoned staging folder."""
    from tests.helpers import seed_labelled_arith

    db, models = tmp_path / "train.duckdb", tmp_path / "models"
    with Store(db) as store:
        seed_labelled_arith(store, 8)
    command = [sys.executable, "-m", "flows.cli", "train", "--db", str(db), "--models-dir", str(models),
               "--epochs", "2", "--batch-size", "4", "--json"]
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect")}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not list(models.glob(".*.partial")):  # mid-training: first epoch saved
        assert proc.poll() is None, "training ended before it could be killed"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    with Store(db) as store:
        assert store.scalar("SELECT count(*) FROM prm_models") == 0
    assert [p.name for p in models.iterdir() if not p.name.startswith(".")] == []

    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    with Store(db, read_only=True) as store:
        (model_id, path, model_run), = store.query("SELECT model_id, path, run_id FROM prm_models").rows
        runs = store.query("SELECT run_id, flow_name, status FROM runs ORDER BY started_at").rows
    assert (Path(path) / "prm.json").is_file() and Path(path).name == model_id
    assert not list(models.glob(".*.partial"))  # the killed run's staging folder was cleaned up
    # Lineage: both train runs have their row; the killed one was marked crashed by the rerun, and
    # the model points to the run that trained it.
    assert [(flow, status) for _, flow, status in runs] == [("train", "crashed"), ("train", "completed")]
    assert model_run == runs[1][0]
