"""The openai backend against a real `vllm` OpenAI-compatible server on 127.0.0.1 that dies in
the middle of a label run.

1. The server is SIGKILLed and stays down: the run fails with one line naming the server and
   the unit it was working on; what was stored stays stored.
2. The server is back: a rerun resumes. Its server is SIGKILLed again mid-run and restarted;
   the client's backoff rides over the outage and the run completes.
3. The job ends with exactly N rollouts per unit and no duplicates, and the API key the server
   requires appears nowhere: not in logs, not in the store, not in Prefect's database.
Bounded: every wait has a limit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tasks.store import Store
from tests.helpers import VLLMServer

pytestmark = pytest.mark.engine

N = 3
SECRET = "sk-prmf-" + os.urandom(8).hex()


def start_label(tmp_path: Path, db: Path, server: VLLMServer, name: str, max_attempts: int) -> subprocess.Popen:
    config = {
        "dataset": {"name": "arith", "limit": 5}, "solutions": 2, "rollouts": N, "batch_prefixes": 2,
        "generation": {"temperature": 0.7, "max_tokens": 64}, "rollout": {"temperature": 0.7, "max_tokens": 24},
        "generator": {"backend": "openai", "base_urls": [server.url], "served_model_name": server.model,
                      "max_attempts": max_attempts, "retry_max_wait_s": 10},
    }
    config_path = tmp_path / f"{name}.json"
    config_path.write_text(json.dumps(config))
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PRMF_FAULT": "", "OPENAI_API_KEY": SECRET}
    return subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "-v", "label", "--config", str(config_path), "--db", str(db), "--json"],
        env=env, stdout=(tmp_path / f"{name}.out").open("w"), stderr=(tmp_path / f"{name}.err").open("w"),
    )


def stored_units(db: Path) -> int:
    if not db.exists():
        return 0
    with Store(db, read_only=True, wait_s=60) as store:
        tables = {r[0] for r in store.query("SELECT table_name FROM information_schema.tables").rows}
        return store.scalar("SELECT count(*) FROM work_units") if "work_units" in tables else 0


def wait_for_units(db: Path, at_least: int, proc: subprocess.Popen, timeout_s: float = 300) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before the server could be killed mid-run"
        units = stored_units(db)
        if units >= at_least:
            return units
        time.sleep(0.5)
    raise AssertionError(f"fewer than {at_least} units stored after {timeout_s:.0f} s")


def test_server_killed_mid_run_fails_clearly_then_resumes_and_rides_out_a_restart(tmp_path):
    db = tmp_path / "store.duckdb"
    server = VLLMServer(api_key=SECRET, log_path=tmp_path / "server.log").start()
    try:
        # 1. Killed and not restarted: two tries, then a clear failure.
        first = start_label(tmp_path, db, server, "first", max_attempts=2)
        wait_for_units(db, 1, first)
        server.kill()
        assert first.wait(timeout=300) == 2
        errors = [line for line in (tmp_path / "first.err").read_text().splitlines() if line.startswith("error:")]
        assert len(errors) == 1, errors  # one line (-v adds log lines around it)
        error = errors[0]
        assert error.startswith("error: openai completer:"), error
        assert server.url in error and "while labelling unit" in error and "rerun to resume" in error, error
        kept = stored_units(db)
        assert kept >= 1

        # 2. Server back; the rerun resumes, and survives the server dying once more.
        server.start()
        second = start_label(tmp_path, db, server, "second", max_attempts=10)
        wait_for_units(db, kept + 2, second)
        server.kill()
        time.sleep(2)
        server.start()
        assert second.wait(timeout=400) == 0, (tmp_path / "second.err").read_text()[-3000:]
        retries = (tmp_path / "second.err").read_text()
        assert "completion request failed" in retries and server.url in retries
        summary = json.loads((tmp_path / "second.out").read_text())
    finally:
        server.kill()

    # 3. Exact counts, no duplicates, the failed run recorded as such.
    with Store(db, read_only=True) as store:
        units = store.scalar("SELECT count(*) FROM work_units")
        wanted = store.scalar(
            "SELECT count(DISTINCT (s.problem_id, st.prefix_hash)) FROM steps st JOIN solutions s USING (solution_id) "
            "WHERE st.step_index < s.num_steps"
        )
        per_unit = {n for (n,) in store.query("SELECT count(*) FROM rollouts GROUP BY unit_id").rows}
        statuses = [r[0] for r in store.query("SELECT status FROM runs ORDER BY started_at").rows]
        assert store.scalar("SELECT count(*) FROM generations") == 5
        dumped = [str(store.query(f"SELECT * FROM {t}").rows)
                  for (t,) in store.query("SELECT table_name FROM information_schema.tables").rows]
    assert units == wanted and per_unit == {N}
    assert summary["prefixes_already_stored"] == kept
    assert statuses == ["failed", "completed"]

    # The key the server demanded was sent (the runs worked) but never written anywhere.
    assert not any(SECRET in text for text in dumped)
    assert SECRET.encode() not in db.read_bytes()
    for path in [*tmp_path.glob("*.out"), *tmp_path.glob("*.err"), *(tmp_path / "prefect").rglob("*")]:
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), f"API key leaked into {path}"
