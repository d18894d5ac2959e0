"""Store benchmark: do the saved queries stay fast as rollouts grow? (``prmf bench store``)

A synthetic labelled store (``sql/internal/bench_export_store.sql``: problems x solutions x steps,
every non-final prefix rolled out) is queried under three variants:

* ``by-rollouts`` (the first baseline): ``step_estimates``, ``labelled_steps`` and the
  ``step_advantages`` macros as before migration 014, counting every unit's rollouts on every
  query (``sql/internal/bench_store_{estimates,advantages}_by_rollouts.sql``, TEMP views and macros
  that shadow the store's on the bench's connection only);
* ``unit-counts`` (the second baseline, what a store does for problems not settled yet): the
  estimates computed from each unit's ``(n, k)``, written with its rollouts;
* ``settled`` (what a store does once its runs ended, migration 015): the estimates that
  :meth:`Store.settle` stored, read as they are. The settle itself is timed too.

Then, apart (its data differ, so its rows are not compared): ``running``, the settled store while
a run still labels ``running_problems`` of its problems under a second completer
(``sql/internal/bench_store_running_run.sql``): those problems are computed from their units,
the rest read settled. The settle at that run's end is timed.

Every saved query (``sql/queries``) and the two the issue measured (``count(*)`` of
``labelled_steps``, the mean HE and SE of ``step_estimates``) run under each; each is timed as the
best of ``repeats`` runs, and all variants must return the same rows: each baseline is also a
second implementation of the estimates. Timed assertions never go into tests.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

VARIANTS = ("by-rollouts", "unit-counts", "settled")
EXTRA_QUERIES = {
    "count labelled_steps": "SELECT count(*) FROM labelled_steps",
    "avg he, se of step_estimates": "SELECT avg(he::INTEGER), avg(se) FROM step_estimates",
}


def _canonical(rows: list[tuple]) -> list[tuple]:
    """Rows comparable across plans: floats rounded (sums may add in another order), sorted."""
    def cell(v: Any) -> Any:
        return round(v, 9) if isinstance(v, float) else v
    return sorted((tuple(cell(v) for v in row) for row in rows), key=repr)


def _time(store: Any, queries: dict[str, str], variant: str, repeats: int,
          results: dict[str, dict[str, Any]]) -> None:
    from tasks.store import StoreError

    for name, sql in queries.items():
        best, rows = float("inf"), None
        for _ in range(repeats):
            started = time.perf_counter()
            try:
                rows = store.query(sql).rows
            except StoreError as exc:
                raise StoreError(f"bench store: query {name} failed under {variant}: {exc}") from exc
            best = min(best, time.perf_counter() - started)
        results[name][variant] = best
        results[name][f"{variant} rows"] = _canonical(rows)


def time_queries(db: Path, repeats: int = 2, skip: tuple[str, ...] = (), running_problems: int = 1_000
                 ) -> dict[str, Any]:
    """Per query (but those in ``skip``): seconds under each variant (best of ``repeats``) and
    whether the rows agree; and the seconds the settles took. ``db`` must not be settled yet."""
    from tasks.store import Store, internal_sql, saved_queries, split_statements

    queries = {**{name: path.read_text() for name, path in saved_queries().items()}, **EXTRA_QUERIES}
    unknown = sorted(set(skip) - set(queries))
    if unknown:
        raise ValueError(f"unknown queries to skip: {', '.join(unknown)}; known: {', '.join(queries)}")
    queries = {name: sql for name, sql in queries.items() if name not in skip}
    results: dict[str, dict[str, Any]] = {name: {"query": name} for name in queries}
    with Store(db, read_only=True) as store:
        if store.scalar(internal_sql("count_unsettled_problems")) != store.scalar("SELECT count(*) FROM problems"):
            raise ValueError(f"{db} is settled already: the unit-counts variant needs a store no settle has run on")
        _time(store, queries, "unit-counts", repeats, results)
    with Store(db) as store:
        settled = store.settle()
    with Store(db, read_only=True) as store:
        _time(store, queries, "settled", repeats, results)
        store.con.execute(internal_sql("bench_store_estimates_by_rollouts"))
        store.con.execute(internal_sql("bench_store_advantages_by_rollouts"))
        _time(store, queries, "by-rollouts", repeats, results)
    running: dict[str, Any] = {}
    if running_problems:
        with Store(db) as store:
            for statement in split_statements(internal_sql("bench_store_running_run")):
                store.query(statement, {"problems": running_problems} if "$problems" in statement else None)
        with Store(db, read_only=True) as store:
            unsettled = store.scalar(internal_sql("count_unsettled_problems"))
            _time(store, queries, "running", repeats, results)
        with Store(db) as store:
            store.finish_run("bench-running", "completed")
            ended = store.settle()
        running = {"running_problems": unsettled, "running_settle_s": ended.seconds}
    out = []
    for r in results.values():
        rows = [r.pop(f"{variant} rows") for variant in VARIANTS]
        r.pop("running rows", None)
        out.append({**r, "same_rows": all(x == rows[0] for x in rows[1:]),
                    "speedup": r["by-rollouts"] / r["settled"] if r["settled"] else None})
    return {"settle_s": settled.seconds, "settled_problems": settled.problems, **running, "results": out}


def compare(workdir: Path, problems: int, solutions: int, steps: int, rollouts: int, repeats: int = 2,
            skip: tuple[str, ...] = (), running_problems: int = 1_000) -> dict[str, Any]:
    """Build the store in ``workdir``, then time every query under each variant."""
    from tasks.bench_export import fresh_store

    db, sizes, build_s = fresh_store(workdir, "bench-store.duckdb", problems, solutions, steps, rollouts)
    return {"store": {"problems": problems, **sizes}, "build_s": build_s, **time_queries(db, repeats, skip, running_problems)}
