"""The DuckDB store: the one module that talks to the database.

Schema, views and queries live in ``sql/``:
  * ``sql/ddl/NNN_name.sql``  versioned migrations, applied in order once (``schema_migrations``);
  * ``sql/views/*.sql``       ``CREATE OR REPLACE VIEW`` files, refreshed on every writable open;
  * ``sql/queries/*.sql``     saved queries, run by name with ``prmf query NAME``;
  * ``sql/internal/*.sql``    statements the factory itself runs.

A DuckDB file takes one read-write process at a time; within a process, one connection is
shared behind a lock (Prefect may run tasks on worker threads).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"


class StoreError(RuntimeError):
    """A store problem the user can act on (bad path, locked or corrupted file, bad query)."""


def content_key(*parts: object) -> str:
    """Stable content address: sha256 over the parts (unit separator joined), 24 hex chars."""
    text = "\x1f".join(p if isinstance(p, str) else json.dumps(p, sort_keys=True) for p in parts)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def saved_queries() -> dict[str, Path]:
    return {p.stem: p for p in sorted((SQL_DIR / "queries").glob("*.sql"))}


def _internal(name: str) -> str:
    return (SQL_DIR / "internal" / f"{name}.sql").read_text()


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]

    def as_dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row)) for row in self.rows]


class Store:
    def __init__(self, path: Path | str, read_only: bool = False):
        self.path = Path(path)
        self.read_only = read_only
        if read_only and not self.path.exists():
            raise StoreError(f"database {self.path} does not exist (run `prmf label` first or pass --db)")
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._con = duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.IOException as exc:
            raise StoreError(f"cannot open database {self.path}: {exc}") from exc
        except duckdb.Error as exc:  # e.g. not a DuckDB file
            raise StoreError(f"database {self.path} is unreadable: {exc}") from exc
        self._lock = threading.RLock()
        if not read_only:
            self.migrate()

    # --- lifecycle ----------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._con.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """All-or-nothing: a batch is either fully stored or not at all."""
        with self._lock:
            self._con.execute("BEGIN TRANSACTION")
            try:
                yield self._con
            except BaseException:
                self._con.execute("ROLLBACK")
                raise
            self._con.execute("COMMIT")

    def migrate(self) -> list[str]:
        """Apply pending ``sql/ddl`` migrations in order, then refresh views. Returns applied names."""
        applied: list[str] = []
        with self._lock:
            self._con.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version INTEGER PRIMARY KEY, name VARCHAR NOT NULL,"
                " applied_at TIMESTAMP NOT NULL DEFAULT current_timestamp)"
            )
            done = {v for (v,) in self._con.execute("SELECT version FROM schema_migrations").fetchall()}
            for path in sorted((SQL_DIR / "ddl").glob("*.sql")):
                version = int(path.name.split("_", 1)[0])
                if version in done:
                    continue
                with self.transaction() as con:
                    con.execute(path.read_text())
                    con.execute("INSERT INTO schema_migrations (version, name) VALUES (?, ?)", [version, path.stem])
                applied.append(path.stem)
            for path in sorted((SQL_DIR / "views").glob("*.sql")):
                self._con.execute(path.read_text())
        return applied

    # --- generic access -----------------------------------------------------------------------

    def query(
        self, sql: str, params: Sequence[Any] | None = None, tables: dict[str, pa.Table] | None = None
    ) -> QueryResult:
        """Run SQL; ``tables`` are Arrow tables visible to it under their names."""
        with self._lock:
            for name, table in (tables or {}).items():
                self._con.register(name, table)
            try:
                cursor = self._con.execute(sql, params or [])
                if cursor.description is None:
                    return QueryResult([], [])
                return QueryResult([d[0] for d in cursor.description], cursor.fetchall())
            except duckdb.Error as exc:
                raise StoreError(str(exc).strip()) from exc
            finally:
                for name in tables or {}:
                    self._con.unregister(name)

    def saved_query(self, name: str) -> QueryResult:
        queries = saved_queries()
        if name not in queries:
            raise StoreError(f"no saved query {name!r}; available: {', '.join(queries)}")
        return self.query(queries[name].read_text())

    def insert_rows(self, table: str, rows: Iterable[dict[str, Any]], con: Any = None) -> int:
        """Insert rows (dicts keyed by column); rows whose key already exists are skipped.

        Goes through Arrow so thousands of rollouts cost one statement, not thousands.
        Returns the number of rows actually inserted.
        """
        rows = list(rows)
        if not rows:
            return 0
        with self._lock:
            target = con or self._con
            target.register("batch", pa.Table.from_pylist(rows))
            try:
                before = target.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                target.execute(f"INSERT OR IGNORE INTO {table} BY NAME SELECT * FROM batch")
                return target.execute(f"SELECT count(*) FROM {table}").fetchone()[0] - before
            finally:
                target.unregister("batch")

    def scalar(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        rows = self.query(sql, params).rows
        return rows[0][0] if rows else None

    # --- factory statements (sql/internal) ----------------------------------------------------

    def problems_by_id(self, problem_ids: Sequence[str]) -> list[dict[str, Any]]:
        return self.query(_internal("select_problems"), tables={"ids": _ids(problem_ids)}).as_dicts()

    def existing_keys(self, table: str, column: str, keys: Sequence[str]) -> set[str]:
        if not keys:
            return set()
        sql = f"SELECT t.{column} FROM {table} t JOIN wanted w ON t.{column} = w.key"
        return {r[0] for r in self.query(sql, tables={"wanted": pa.table({"key": list(keys)})}).rows}

    def solution_steps(self, problem_ids: Sequence[str], generator_model: str) -> list[dict[str, Any]]:
        """Every step of every solution of these problems by this generator, in order."""
        return self.query(
            _internal("solution_steps"), [generator_model], tables={"ids": _ids(problem_ids)}
        ).as_dicts()

    def run_summary(self, run_id: str, problem_ids: Sequence[str], generator_model: str) -> dict[str, Any]:
        return self.query(
            _internal("run_summary"), [generator_model, run_id], tables={"ids": _ids(problem_ids)}
        ).as_dicts()[0]

    def start_run(self, run: dict[str, Any]) -> None:
        self.insert_rows("runs", [{**run, "status": "running"}])

    def finish_run(self, run_id: str, status: str, error: str | None = None) -> None:
        self.query(_internal("finish_run"), [status, error, run_id, run_id, run_id])


def _ids(problem_ids: Sequence[str]) -> pa.Table:
    return pa.table({"problem_id": pa.array(list(problem_ids), type=pa.string())})


def to_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)
