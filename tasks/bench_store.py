"""Store benchmark: do the saved queries stay fast as rollouts grow? (``prmf bench store``)

A synthetic labelled store (``sql/internal/bench_export_store.sql``: problems x solutions x steps,
every non-final prefix rolled out) is queried twice on one read-only connection:

* ``by-rollouts`` (the baseline): ``step_estimates`` and the ``step_advantages`` macro as before
  they read the units' counts, counting every unit's rollouts on every query
  (``sql/internal/bench_store_{estimates,advantages}_by_rollouts.sql``, a TEMP view and a TEMP
  macro that shadow the store's for this connection only);
* ``unit-counts`` (what the store does): summing each unit's ``(n, k)``, written with its rollouts.

Every saved query (``sql/queries``) and the two the issue measured (``count(*)`` of
``labelled_steps``, the mean HE and SE of ``step_estimates``) run under both; each is timed as
the best of ``repeats`` runs, and both variants must return the same rows: the baseline is also a
second implementation of the estimates. Timed assertions never go into tests.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

VARIANTS = ("by-rollouts", "unit-counts")
EXTRA_QUERIES = {
    "count labelled_steps": "SELECT count(*) FROM labelled_steps",
    "avg he, se of step_estimates": "SELECT avg(he::INTEGER), avg(se) FROM step_estimates",
}


def _canonical(rows: list[tuple]) -> list[tuple]:
    """Rows comparable across plans: floats rounded (sums may add in another order), sorted."""
    def cell(v: Any) -> Any:
        return round(v, 9) if isinstance(v, float) else v
    return sorted((tuple(cell(v) for v in row) for row in rows), key=repr)


def time_queries(db: Path, repeats: int = 2, skip: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Per query (but those in ``skip``): seconds under each variant (best of ``repeats``) and
    whether the rows agree."""
    from tasks.store import Store, StoreError, internal_sql, saved_queries

    queries = {**{name: path.read_text() for name, path in saved_queries().items()}, **EXTRA_QUERIES}
    unknown = sorted(set(skip) - set(queries))
    if unknown:
        raise ValueError(f"unknown queries to skip: {', '.join(unknown)}; known: {', '.join(queries)}")
    queries = {name: sql for name, sql in queries.items() if name not in skip}
    results: dict[str, dict[str, Any]] = {name: {"query": name} for name in queries}
    with Store(db, read_only=True) as store:
        for variant in reversed(VARIANTS):  # the store's own views first, then the shadowing baseline
            if variant == "by-rollouts":
                store.con.execute(internal_sql("bench_store_estimates_by_rollouts"))
                store.con.execute(internal_sql("bench_store_advantages_by_rollouts"))
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
    out = []
    for r in results.values():
        same = r.pop("by-rollouts rows") == r.pop("unit-counts rows")
        out.append({**r, "same_rows": same, "speedup": r["by-rollouts"] / r["unit-counts"] if r["unit-counts"] else None})
    return out


def compare(workdir: Path, problems: int, solutions: int, steps: int, rollouts: int, repeats: int = 2,
            skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """Build the store in ``workdir``, then time every query under both variants."""
    from tasks.bench_export import fresh_store

    db, sizes, build_s = fresh_store(workdir, "bench-store.duckdb", problems, solutions, steps, rollouts)
    return {"store": {"problems": problems, **sizes}, "build_s": build_s, "results": time_queries(db, repeats, skip)}
