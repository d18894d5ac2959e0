"""Work leases: runners that share a store never compute the same work twice.

DuckDB lets one process write a file at a time, so runners coordinate through the store
itself: before computing a batch, a runner *claims* its work keys in one short transaction
(``claims`` table, ``sql/internal/claim.sql``), releases the file while its engine works, and
stores the batch together with the release of its claims in one transaction. A claim is a
lease: a heartbeat thread renews the run's claims every ``lease_s / 3`` seconds, so claims of a
runner that died (SIGKILL, lost machine) expire after ``lease_s`` and another runner takes them
over. Claims of a run that is no longer ``running`` (finished, failed, or found crashed by
:func:`tasks.runs.mark_crashed_runs`) are free at once.

A runner that finds all remaining work claimed by live runners waits for it to be stored (or
for those leases to lapse), so when a run finishes, all of its work is in the store.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import pyarrow as pa

from tasks.runs import mark_crashed_runs
from tasks.store import Store, StoreError, internal_sql, lake_sql

log = logging.getLogger(__name__)

R = TypeVar("R")
C = TypeVar("C")

POLL_S = 2.0  # how often a runner waiting on other runners' claims looks again


def claim(store: Store, kind: str, keys: Sequence[str], run_id: str, limit: int, lease_s: float) -> list[str]:
    """Claim up to ``limit`` of ``keys`` (in order) for ``run_id``; returns the keys now held."""
    if not keys or limit < 1:
        return []
    wanted = pa.table({"key": pa.array(list(keys), pa.string()), "position": pa.array(range(len(keys)), pa.int64())})
    params = {"kind": kind, "run": run_id, "lease_ms": int(lease_s * 1000), "limit": limit}

    def take() -> set[str]:
        with store.transaction():
            if not store.lake:
                return {r[0] for r in store.query(internal_sql("claim"), params, tables={"wanted": wanted}).rows}
            store.query(lake_sql("tick_lease_clock"))
            store.query(lake_sql("claim"), params, tables={"wanted": wanted})
            return {r[0] for r in store.query(lake_sql("claimed"), {"run": run_id, "kind": kind},
                                              tables={"wanted": wanted}).rows}

    taken = store.retrying(take)
    return [k for k in keys if k in taken]


def release(store: Store, run_id: str, keys: Sequence[str] | None = None) -> None:
    """Drop the run's claims on ``keys`` (all of them when None). Call inside the storing transaction."""
    released = pa.table({"key": pa.array(list(keys or []), pa.string())})
    store.query(store.internal("release_claims"), {"run": run_id, "all": keys is None}, tables={"released": released})


def renew(store: Store, run_id: str, lease_s: float) -> None:
    store.query(store.internal("renew_claims"), {"run": run_id, "lease_ms": int(lease_s * 1000)})


class Heartbeat:
    """Renews a run's leases from a daemon thread until stopped (a context manager).

    It opens the store briefly for each renewal; a failed renewal is logged and retried on the
    next beat (the lease is three beats long).
    """

    def __init__(self, db: Path | str, run_id: str, lease_s: float):
        self.db, self.run_id, self.lease_s = db, run_id, lease_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"lease-heartbeat-{run_id[:8]}", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            try:
                with Store(self.db, wait_s=self.lease_s / 3) as store:
                    renew(store, self.run_id, self.lease_s)
            except StoreError as exc:
                log.warning("lease renewal for run %s failed (will retry): %s", self.run_id, exc)

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def claimed_batches(
    store: Store,
    kind: str,
    keys: Sequence[str],
    run_id: str,
    batch_size: int,
    lease_s: float,
    stored: Callable[[Sequence[str]], set[str]],
    on_stored_elsewhere: Callable[[int], None] = lambda count: None,
) -> Iterator[list[str]]:
    """Yield batches of ``keys`` this run holds a lease on, until every key is stored.

    ``stored(keys)`` says which keys are already in the store. The caller computes each batch
    (inside ``store.released()``) and stores it together with :func:`release` of its keys.
    Keys another runner stores meanwhile are skipped and reported to ``on_stored_elsewhere``.
    """
    remaining = list(keys)

    def skip_stored(looked_at: list[str]) -> set[str]:
        """Drop the keys of ``looked_at`` already stored from the remaining work; returns them."""
        nonlocal remaining
        done = stored(looked_at)
        if done:
            on_stored_elsewhere(len(done))
            remaining = [k for k in remaining if k not in done]
        return done

    with Heartbeat(store.location, run_id, lease_s):
        while remaining:
            skip_stored(remaining)
            if not remaining:
                break
            batch = claim(store, kind, remaining, run_id, batch_size, lease_s)
            if batch and store.lake:
                # No lock spans stored() and claim() on a lake: another runner may have stored
                # keys and released them in between. Claims and stores are serialised (both tick
                # lease_clock), so a look after the claim sees every store committed before it.
                done = skip_stored(batch)
                batch = [k for k in batch if k not in done]
                if not batch:
                    continue
            if batch:
                yield batch
                taken = set(batch)
                remaining = [k for k in remaining if k not in taken]
                continue
            # Everything left is leased by live runners: notice dead local ones, then wait.
            if mark_crashed_runs(store):
                continue
            log.info("%d %s keys are claimed by other runs; waiting for them", len(remaining), kind)
            with store.released():
                time.sleep(POLL_S)


def process_claimed(
    store: Store,
    kind: str,
    keys: Sequence[str],
    run_id: str,
    batch_size: int,
    lease_s: float,
    *,
    stored: Callable[[Sequence[str]], set[str]],
    compute: Callable[[list[str]], R],
    commit: Callable[[list[str], R], C],
    on_stored_elsewhere: Callable[[int], None] = lambda count: None,
    after_commit: Callable[[list[str], R, C], None] = lambda keys, result, committed: None,
) -> None:
    """The factory's one work-queue step: claim a batch -> ``compute`` it with the store released
    (engine, grader) -> ``commit`` it in one transaction together with the release of its claims
    -> ``after_commit`` with what ``commit`` returned (counts to tally). ``commit`` only writes:
    on a lake, a commit that conflicts with another writer's runs again (:meth:`Store.retrying`).

    Every producer of stored work (solution generation, step labelling under any strategy) runs
    through it, so each inherits resumability (stored keys are skipped), leases shared with
    other runners, and crash safety (a batch is stored whole or not at all).
    """
    for batch in claimed_batches(store, kind, keys, run_id, batch_size, lease_s, stored=stored,
                                 on_stored_elsewhere=on_stored_elsewhere):
        with store.released():  # other runners (and ad hoc queries) may use the file meanwhile
            result = compute(batch)
        def store_batch() -> C:
            with store.transaction():
                committed = commit(batch, result)
                release(store, run_id, batch)
            return committed

        after_commit(batch, result, store.retrying(store_batch))
