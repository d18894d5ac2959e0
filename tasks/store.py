"""The DuckDB store: the one module that talks to the database.

Schema, views and queries live in ``sql/``:
  * ``sql/ddl/NNN_name.sql``  versioned migrations, applied in order once (``schema_migrations``);
  * ``sql/views/NN_name.sql``  ``CREATE OR REPLACE VIEW`` files, refreshed in order on every writable open;
  * ``sql/queries/*.sql``     saved queries, run by name with ``prmf query NAME``;
  * ``sql/internal/*.sql``    statements the factory itself runs.

A DuckDB file takes one read-write process at a time, so the factory holds it only briefly:
flows open the store to plan, claim and store a batch and release it while the engine works
(:meth:`Store.released`). Opening waits up to ``PRMF_DB_LOCK_WAIT_S`` seconds (default 120)
for another process to let go, then fails naming the process that holds the file. Within a
process, every statement on a file goes through one lock per file (Prefect runs tasks on
worker threads; a lease heartbeat renews claims from its own thread).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"

_FILE_LOCKS: dict[Path, threading.RLock] = {}
_FILE_LOCKS_GUARD = threading.Lock()


def _file_lock(path: Path) -> threading.RLock:
    """One lock per database file per process: statements from all threads are serialized."""
    with _FILE_LOCKS_GUARD:
        return _FILE_LOCKS.setdefault(path.resolve(), threading.RLock())


def lock_wait_s() -> float:
    return float(os.environ.get("PRMF_DB_LOCK_WAIT_S", "120"))


class StoreError(RuntimeError):
    """A store problem the user can act on (bad path, locked or corrupted file, bad query)."""


def content_key(*parts: object) -> str:
    """Stable content address: sha256 over the parts (unit separator joined), 24 hex chars."""
    text = "\x1f".join(p if isinstance(p, str) else json.dumps(p, sort_keys=True) for p in parts)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def saved_queries() -> dict[str, Path]:
    return {p.stem: p for p in sorted((SQL_DIR / "queries").glob("*.sql"))}


def internal_sql(name: str) -> str:
    """The text of ``sql/internal/NAME.sql``: a statement the factory itself runs."""
    return (SQL_DIR / "internal" / f"{name}.sql").read_text()


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]

    def as_dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row)) for row in self.rows]


class Store:
    def __init__(self, path: Path | str, read_only: bool = False, wait_s: float | None = None):
        self.path = Path(path)
        self.read_only = read_only
        self.wait_s = lock_wait_s() if wait_s is None else wait_s
        if read_only and not self.path.exists():
            raise StoreError(f"database {self.path} does not exist (run `prmf label` first or pass --db)")
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = _file_lock(self.path)
        self._con: duckdb.DuckDBPyConnection | None = None
        self._connect()
        if not read_only:
            self.migrate()

    # --- lifecycle ----------------------------------------------------------------------------

    def _connect(self) -> None:
        """Open the file, waiting (with jittered backoff) while another process holds it."""
        deadline = time.monotonic() + self.wait_s
        delay = 0.05
        while True:
            try:
                self._con = duckdb.connect(str(self.path), read_only=self.read_only)
                return
            except duckdb.IOException as exc:
                holder = _lock_holder(str(exc))
                if holder is None:
                    raise StoreError(f"cannot open database {self.path}: {_first_line(exc)}") from exc
                if time.monotonic() >= deadline:
                    raise StoreError(
                        f"database {self.path} is locked by another process ({holder}) and was not released "
                        f"within {self.wait_s:.0f} s (PRMF_DB_LOCK_WAIT_S); close that connection or wait for it"
                    ) from exc
            except duckdb.Error as exc:  # e.g. not a DuckDB file
                raise StoreError(f"database {self.path} is unreadable: {_first_line(exc)}") from exc
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 1.0)

    def close(self) -> None:
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None

    @contextmanager
    def released(self) -> Iterator[None]:
        """Let other processes use the file during long work (an engine call); reopen after."""
        self.close()
        try:
            yield
        finally:
            self._connect()

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            raise StoreError(f"database {self.path} is not open (used inside Store.released())")
        return self._con

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """All-or-nothing: a batch is either fully stored or not at all."""
        with self._lock:
            self.con.execute("BEGIN TRANSACTION")
            try:
                yield self.con
            except BaseException:
                self.con.execute("ROLLBACK")
                raise
            self.con.execute("COMMIT")

    def backup(self, destination: Path | str) -> Path:
        """A consistent copy of the database file at ``destination`` (a new file).

        Needs a writable store: holding the file's write lock means no other process writes
        while the WAL is checkpointed into the file and the bytes are copied (runners wait for
        the lock as they do between batches).
        """
        import shutil

        destination = Path(destination)
        if destination.exists():
            raise StoreError(f"backup destination {destination} exists; choose a new path")
        if self.read_only:
            raise StoreError("backup needs the store opened for writing (it holds the write lock while copying)")
        destination.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            self.con.execute("CHECKPOINT")
            partial = destination.with_name(destination.name + ".partial")
            shutil.copyfile(self.path, partial)
            partial.rename(destination)  # a backup path either holds a whole copy or nothing
        return destination

    def migrate(self) -> list[str]:
        """Apply pending ``sql/ddl`` migrations in order, then refresh views. Returns applied names."""
        applied: list[str] = []
        with self._lock:
            self.con.execute(internal_sql("create_schema_migrations"))
            done = {v for (v,) in self.con.execute(internal_sql("applied_migrations")).fetchall()}
            for path in sorted((SQL_DIR / "ddl").glob("*.sql")):
                version = int(path.name.split("_", 1)[0])
                if version in done:
                    continue
                with self.transaction() as con:
                    con.execute(path.read_text())
                    con.execute(internal_sql("record_migration"), {"version": version, "name": path.stem})
                applied.append(path.stem)
            for path in sorted((SQL_DIR / "views").glob("*.sql")):
                self.con.execute(path.read_text())
        return applied

    # --- generic access -----------------------------------------------------------------------

    def query(
        self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None, tables: dict[str, pa.Table] | None = None
    ) -> QueryResult:
        """Run SQL (``?`` or ``$name`` parameters); ``tables`` are Arrow tables visible to it by name."""
        with self._lock:
            for name, table in (tables or {}).items():
                self.con.register(name, table)
            try:
                cursor = self.con.execute(sql, params or [])
                if cursor.description is None:
                    return QueryResult([], [])
                return QueryResult([d[0] for d in cursor.description], cursor.fetchall())
            except duckdb.Error as exc:
                raise StoreError(str(exc).strip()) from exc
            finally:
                for name in tables or {}:
                    self.con.unregister(name)

    def arrow(self, sql: str, params: dict[str, Any] | None = None) -> pa.Table:
        """Run SQL and return its result as one Arrow table (compact columns, not Python rows)."""
        with self._lock:
            try:
                return self.con.execute(sql, params or {}).fetch_arrow_table()
            except duckdb.Error as exc:
                raise StoreError(str(exc).strip()) from exc

    def stream(self, sql: str, params: dict[str, Any] | None = None, rows_per_batch: int = 10_000,
               tables: dict[str, pa.Table] | None = None) -> Iterator[list[dict[str, Any]]]:
        """Run SQL and yield its rows as dicts, at most ``rows_per_batch`` at a time (Arrow record
        batches): a result of millions of rows never sits in memory whole. ``tables``: Arrow
        tables visible to it by name."""
        with self._lock:
            cursor = self.con.cursor()
        try:
            for name, table in (tables or {}).items():
                cursor.register(name, table)
            reader = cursor.execute(sql, params or {}).fetch_record_batch(rows_per_batch)
            for batch in reader:
                yield batch.to_pylist()
        except duckdb.Error as exc:
            raise StoreError(str(exc).strip()) from exc
        finally:
            cursor.close()

    def saved_query(self, name: str) -> QueryResult:
        queries = saved_queries()
        if name not in queries:
            raise StoreError(f"no saved query {name!r}; available: {', '.join(queries)}")
        return self.query(queries[name].read_text())

    def insert_rows(self, table: str, rows: Iterable[dict[str, Any]], con: Any = None, skip_existing: bool = True) -> int:
        """Insert rows (dicts keyed by column); rows whose key already exists are skipped
        (``skip_existing=False`` for tables without a key, e.g. ``eval_results``).

        Goes through Arrow so thousands of rollouts cost one statement, not thousands.
        Returns the number of rows actually inserted.
        """
        rows = list(rows)
        if not rows:
            return 0
        with self._lock:
            target = con or self.con
            target.register("batch", pa.Table.from_pylist(rows))
            try:
                before = target.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                verb = "INSERT OR IGNORE" if skip_existing else "INSERT"
                target.execute(f"{verb} INTO {table} BY NAME SELECT * FROM batch")
                return target.execute(f"SELECT count(*) FROM {table}").fetchone()[0] - before
            finally:
                target.unregister("batch")

    def scalar(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> Any:
        rows = self.query(sql, params).rows
        return rows[0][0] if rows else None

    # --- factory statements (sql/internal) ----------------------------------------------------

    def problems_by_id(self, problem_ids: Sequence[str]) -> list[dict[str, Any]]:
        return self.query(internal_sql("select_problems"), tables={"ids": _ids(problem_ids)}).as_dicts()

    def existing_keys(self, table: str, column: str, keys: Sequence[str]) -> set[str]:
        if not keys:
            return set()
        sql = f"SELECT t.{column} FROM {table} t JOIN wanted w ON t.{column} = w.key"
        return {r[0] for r in self.query(sql, tables={"wanted": pa.table({"key": list(keys)})}).rows}

    def solution_steps(self, problem_ids: Sequence[str], generator_model: str) -> list[dict[str, Any]]:
        """Every step of every solution of these problems by this generator, in order."""
        return self.query(
            internal_sql("solution_steps"), [generator_model], tables={"ids": _ids(problem_ids)}
        ).as_dicts()

    def run_summary(self, run_id: str, problem_ids: Sequence[str], generator_model: str) -> dict[str, Any]:
        return self.query(
            internal_sql("run_summary"), [generator_model, run_id], tables={"ids": _ids(problem_ids)}
        ).as_dicts()[0]

    def start_run(self, run: dict[str, Any]) -> None:
        self.insert_rows("runs", [{**run, "status": "running"}])

    def finish_run(self, run_id: str, status: str, error: str | None = None) -> None:
        self.query(internal_sql("finish_run"), {"status": status, "error": error, "run_id": run_id})


def _lock_holder(message: str) -> str | None:
    """'PID 123' (and program) from DuckDB's lock-conflict message; None for other IO errors."""
    if "lock" not in message.lower():
        return None
    match = re.search(r"held in (\S+) \(PID (\d+)\)", message)
    return f"PID {match.group(2)}, {match.group(1)}" if match else "unknown process"


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _ids(problem_ids: Sequence[str]) -> pa.Table:
    return pa.table({"problem_id": pa.array(list(problem_ids), type=pa.string())})


def to_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)
