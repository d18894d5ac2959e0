"""Work leases on a real DuckDB file: who may claim what, takeover of lapsed and dead leases,
heartbeat renewal, and release together with the stored work."""

from __future__ import annotations

import time

from tasks.leases import Heartbeat, claim, claimed_batches, release
from tasks.store import Store


def add_run(store: Store, run_id: str, status: str = "running", host: str = "elsewhere", pid: int = 1) -> None:
    store.insert_rows("runs", [{"run_id": run_id, "flow_name": "label", "status": status, "host": host, "pid": pid}])


def holders(store: Store) -> dict[str, str]:
    return dict(store.query("SELECT work_key, run_id FROM claims").rows)


def test_a_claimed_key_is_not_handed_to_another_live_run(db_path):
    with Store(db_path) as store:
        add_run(store, "A")
        add_run(store, "B")
        keys = [f"k{i}" for i in range(5)]
        assert claim(store, "label", keys, "A", limit=3, lease_s=60) == ["k0", "k1", "k2"]
        assert claim(store, "label", keys, "B", limit=3, lease_s=60) == ["k3", "k4"]
        assert claim(store, "label", keys, "B", limit=3, lease_s=60) == ["k3", "k4"]  # its own again
        assert claim(store, "label", keys[:3], "B", limit=3, lease_s=60) == []
        assert holders(store) == {"k0": "A", "k1": "A", "k2": "A", "k3": "B", "k4": "B"}


def test_lapsed_leases_and_leases_of_ended_runs_are_taken_over(db_path):
    with Store(db_path) as store:
        add_run(store, "live")
        add_run(store, "gone", status="crashed")
        add_run(store, "slow")
        add_run(store, "me")
        claim(store, "label", ["a"], "live", 1, lease_s=60)
        claim(store, "label", ["b"], "gone", 1, lease_s=60)
        claim(store, "label", ["c"], "slow", 1, lease_s=60)
        # "slow" stopped renewing: its lease ran out a minute ago.
        store.query("UPDATE claims SET expires_at = current_timestamp - INTERVAL 1 MINUTE WHERE run_id = 'slow'")
        assert claim(store, "label", ["a", "b", "c"], "me", 10, lease_s=60) == ["b", "c"]
        assert holders(store) == {"a": "live", "b": "me", "c": "me"}


def test_release_drops_only_the_given_keys_of_that_run(db_path):
    with Store(db_path) as store:
        add_run(store, "A")
        add_run(store, "B")
        claim(store, "label", ["a1", "a2"], "A", 2, 60)
        claim(store, "label", ["b1"], "B", 1, 60)
        with store.transaction():
            release(store, "A", ["a1", "b1"])  # b1 is not A's: untouched
        assert holders(store) == {"a2": "A", "b1": "B"}
        release(store, "A")
        assert holders(store) == {"b1": "B"}


def test_heartbeat_renews_the_runs_leases(db_path):
    with Store(db_path) as store:
        add_run(store, "A")
        claim(store, "label", ["k"], "A", 1, lease_s=3)
        first = store.scalar("SELECT expires_at FROM claims")
        with store.released(), Heartbeat(db_path, "A", lease_s=3):
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                time.sleep(0.5)
                with Store(db_path) as reader:  # same process: same (read-write) configuration
                    if reader.scalar("SELECT expires_at FROM claims") > first:
                        break
        assert store.scalar("SELECT expires_at FROM claims") > first


def test_claimed_batches_skip_work_stored_by_others_and_wait_out_dead_runners(db_path):
    """A runner whose remaining keys are held by a crashed local run takes them over."""
    import os
    import socket

    with Store(db_path) as store:
        add_run(store, "me", host=socket.gethostname(), pid=os.getpid())
        # A run on this host whose process is gone (pid 2**22 + 1 is above the default pid_max).
        add_run(store, "dead", host=socket.gethostname(), pid=2**22 + 1)
        claim(store, "label", ["x", "y"], "dead", 2, lease_s=600)
        stored: set[str] = {"z"}  # another runner already stored z
        others: list[int] = []
        batches = []
        for batch in claimed_batches(store, "label", ["x", "y", "z"], "me", 1, 600,
                                     stored=lambda keys: {k for k in keys if k in stored},
                                     on_stored_elsewhere=others.append):
            batches.append(batch)
            stored.update(batch)
            with store.transaction():
                release(store, "me", batch)
        assert batches == [["x"], ["y"]]
        assert others == [1]
        assert store.scalar("SELECT status FROM runs WHERE run_id = 'dead'") == "crashed"
        assert holders(store) == {}
