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

The same class opens a DuckLake store (``ducklake:...`` locations, :mod:`tasks.lake`): many
processes write it at once, so nothing is released, a lake's own statements come from
``sql/lake/`` where they differ (:meth:`Store.internal`), keys are kept by anti-joins, and a
commit that conflicts with another writer's is retried (:meth:`Store.retrying`).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import pyarrow as pa

from tasks.lake import LAKE_ALIAS, LAKE_BASE_VERSION, LakeError, is_lake, lake_tables, redact, table_keys
from tasks.lake import connect as lake_connect

T = TypeVar("T")

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"

SETTLED_ESTIMATES_VERSION = 15  # the migration that adds the settled_* tables (Store.settle)

_FILE_LOCKS: dict[Path, threading.RLock] = {}
_FILE_LOCKS_GUARD = threading.Lock()


def _file_lock(location: str) -> threading.RLock:
    """One lock per database (file or lake) per process: statements from all threads are serialized."""
    key = location if is_lake(location) else str(Path(location).resolve())
    with _FILE_LOCKS_GUARD:
        return _FILE_LOCKS.setdefault(key, threading.RLock())


def lock_wait_s() -> float:
    return float(os.environ.get("PRMF_DB_LOCK_WAIT_S", "120"))


class StoreError(RuntimeError):
    """A store problem the user can act on (bad path, locked or corrupted file, bad query)."""


class StoreConflict(StoreError):
    """A lake transaction that could not commit because another writer changed the same table
    (an update or delete); :meth:`Store.retrying` runs it again."""


def content_key(*parts: object) -> str:
    """Stable content address: sha256 over the parts (unit separator joined), 24 hex chars."""
    text = "\x1f".join(p if isinstance(p, str) else json.dumps(p, sort_keys=True) for p in parts)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def saved_queries() -> dict[str, Path]:
    return {p.stem: p for p in sorted((SQL_DIR / "queries").glob("*.sql"))}


def internal_sql(name: str) -> str:
    """The text of ``sql/internal/NAME.sql``: a statement the factory itself runs."""
    return (SQL_DIR / "internal" / f"{name}.sql").read_text()


def migration_files() -> list[tuple[int, Path]]:
    """The ``sql/ddl`` migrations as (version, file), in order."""
    return [(int(p.name.split("_", 1)[0]), p) for p in sorted((SQL_DIR / "ddl").glob("*.sql"))]


def latest_schema_version() -> int:
    return migration_files()[-1][0]


def view_files() -> list[Path]:
    """The ``sql/views`` files (views and table macros), in the order they build on each other."""
    return sorted((SQL_DIR / "views").glob("*.sql"))


def lake_sql(name: str) -> str | None:
    """The text of ``sql/lake/NAME.sql``, a lake's own version of an internal statement; None if
    the lake runs the internal one."""
    path = SQL_DIR / "lake" / f"{name}.sql"
    return path.read_text() if path.exists() else None


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]

    def as_dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row)) for row in self.rows]


@dataclass(frozen=True)
class Settled:
    """What one :meth:`Store.settle` stored: the runs it settled, the problems it recomputed, and
    how many problems are still unsettled (written by runs still running)."""
    runs: list[str]
    problems: int
    unsettled: int
    seconds: float


class Store:
    def __init__(self, path: Path | str, read_only: bool = False, wait_s: float | None = None):
        self.location = str(path)
        self.lake = is_lake(self.location)
        self.path = Path(path)
        self.read_only = read_only
        self.wait_s = lock_wait_s() if wait_s is None else wait_s
        if not self.lake:
            if read_only and not self.path.exists():
                raise StoreError(f"database {self.path} does not exist (run `prmf label` first or pass --db)")
            if not read_only:
                self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = _file_lock(self.location)
        self._con: duckdb.DuckDBPyConnection | None = None
        self._in_transaction = self._serialized = False
        self._connect()
        if not read_only:
            self.migrate()
        elif self.lake and not self._lake_has_schema():
            self.close()
            raise StoreError(f"lake {redact(self.location)} has no prmf tables yet (run `prmf label` first, or "
                             f"`prmf migrate-store` to copy a store into it)")
        else:
            self._current_views_for_this_connection()

    # --- lifecycle ----------------------------------------------------------------------------

    def _connect(self) -> None:
        """Open the file, waiting (with jittered backoff) while another process holds it."""
        if self.lake:
            try:
                self._con = lake_connect(self.location, read_only=self.read_only)
            except LakeError as exc:
                raise StoreError(str(exc)) from exc
            return
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
        """Let other processes use the file during long work (an engine call); reopen after. A
        lake takes many writers: it stays open."""
        if self.lake:
            yield
            return
        self.close()
        try:
            yield
        finally:
            self._connect()

    @property
    def absolute_location(self) -> str:
        """Where this store is, for another process (a retrain worker): a file's absolute path, a
        lake's location as given."""
        return self.location if self.lake else str(self.path.resolve())

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
            self._in_transaction, self._serialized = True, False
            try:
                yield self.con
            except BaseException:
                self.con.execute("ROLLBACK")
                raise
            finally:
                self._in_transaction = False
            try:
                self.con.execute("COMMIT")
            except duckdb.TransactionException as exc:
                raise _commit_error(exc, lake=self.lake) from exc

    def retrying(self, write: Callable[[], T], attempts: int = 8) -> T:
        """``write()`` (a transaction, or a single statement) run again while a lake commit
        conflicts with another writer's, with jittered backoff; once on a file store."""
        for attempt in range(attempts):
            try:
                return write()
            except StoreConflict:
                if attempt == attempts - 1:
                    raise
                time.sleep(0.05 * 2**attempt * (0.5 + random.random()))
        raise AssertionError("unreachable")

    def internal(self, name: str) -> str:
        """An internal statement: the lake's own version (``sql/lake/``) on a lake."""
        return (self.lake and lake_sql(name)) or internal_sql(name)

    def backup(self, destination: Path | str) -> Path:
        """A consistent copy of the database file at ``destination`` (a new file).

        Needs a writable store: holding the file's write lock means no other process writes
        while the WAL is checkpointed into the file and the bytes are copied (runners wait for
        the lock as they do between batches).
        """
        import shutil

        if self.lake:
            raise StoreError("backup copies a DuckDB file; a lake is backed up by its catalog database and data "
                             "path (or copied with `prmf migrate-store`)")
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
        """Apply pending ``sql/ddl`` migrations in order, then refresh views. Returns applied names.
        A store that gains the settled estimates (migration 015) settles its ended runs at once,
        so that its queries do not compute every problem from its units until its next run ends."""
        applied = self.retrying(self._migrate_lake) if self.lake else self._migrate_file()
        if any(name.startswith(f"{SETTLED_ESTIMATES_VERSION:03d}_") for name in applied):
            self.settle()
        return applied

    def _migrate_file(self) -> list[str]:
        applied: list[str] = []
        with self._lock:
            self.con.execute(internal_sql("create_schema_migrations"))
            done = {v for (v,) in self.con.execute(internal_sql("applied_migrations")).fetchall()}
            for version, path in migration_files():
                if version in done:
                    continue
                with self.transaction() as con:
                    con.execute(path.read_text())
                    con.execute(internal_sql("record_migration"), {"version": version, "name": path.stem})
                applied.append(path.stem)
            for path in view_files():
                self.con.execute(path.read_text())
        return applied

    def _current_views_for_this_connection(self) -> None:
        """A read-only open cannot rewrite the views and macros an older version stored, and the
        saved queries are this version's: this version's views go in as TEMP views and macros,
        which shadow the stored ones on this connection only. Only on a store whose schema is
        current, since a view binds to the columns of its tables (an older schema keeps its views
        until a writable open migrates it)."""
        with self._lock:
            if not self.con.execute(
                    "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'schema_migrations'").fetchone()[0]:
                return
            if self.con.execute(internal_sql("schema_version")).fetchone()[0] != latest_schema_version():
                return
            for path in view_files():
                self.con.execute(re.sub(r"CREATE OR REPLACE (VIEW|MACRO)", r"CREATE OR REPLACE TEMP \1",
                                        path.read_text()))

    def _lake_has_schema(self) -> bool:
        return bool(self.con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE database_name = $lake AND table_name = 'schema_migrations'",
            {"lake": LAKE_ALIAS}).fetchone()[0])

    def _migrate_lake(self) -> list[str]:
        """A new lake gets the derived schema (migrations up to the base version) and the lake's
        own tables; later migrations run as written. Views and macros are rewritten only when
        their text changed (``lake_objects``): every writer opens the store, and rewriting the
        catalog on each open would conflict with the other writers."""
        applied: list[str] = []
        with self._lock:
            if not self._lake_has_schema():
                with self.transaction() as con:
                    for statement in lake_tables():
                        con.execute(statement)
                    con.execute(lake_sql("schema"))
                    for version, path in migration_files():
                        if version <= LAKE_BASE_VERSION:
                            con.execute(internal_sql("record_migration"), {"version": version, "name": path.stem})
                            applied.append(path.stem)
            done = {v for (v,) in self.con.execute(internal_sql("applied_migrations")).fetchall()}
            for version, path in migration_files():
                if version not in done:
                    with self.transaction() as con:
                        con.execute(path.read_text())
                        con.execute(internal_sql("record_migration"), {"version": version, "name": path.stem})
                    applied.append(path.stem)
            views = view_files()
            digest = hashlib.sha256("\x1f".join(p.read_text() for p in views).encode()).hexdigest()
            if self.con.execute(lake_sql("views_digest")).fetchone()[0] != digest:
                with self.transaction() as con:
                    for path in views:
                        con.execute(path.read_text())
                    con.execute(lake_sql("record_views_digest"), {"digest": digest})
        return applied

    def settle(self, recompute_all: bool = False) -> Settled:
        """Store the estimates of every problem that no running run writes any more (migration
        015), so that queries read them instead of computing them from the units: the runs that
        ended since the last settle join ``settled_runs`` and their problems' rows of
        ``step_estimates_of`` and the like replace the settled ones, in one transaction.
        Idempotent and cheap when nothing ended; ``recompute_all`` settles every finished run
        again. Settles run one at a time (``settle_clock``), and on a lake one that conflicts
        with another writer's commit is retried."""
        if self.read_only:
            raise StoreError("settle writes the settled estimates: open the store for writing")
        started = time.perf_counter()
        if not recompute_all and not self.query(internal_sql("settle_runs")).rows:
            return Settled([], 0, self.scalar(internal_sql("count_unsettled_problems")), time.perf_counter() - started)

        def write() -> tuple[list[str], list[str]]:
            with self.transaction() as con:
                try:
                    con.execute(internal_sql("tick_settle_clock"))
                    if recompute_all:
                        con.execute(internal_sql("forget_settled_runs"))
                    runs = [r for (r,) in con.execute(internal_sql("settle_runs")).fetchall()]
                    problems = [p for (p,) in con.execute(internal_sql("settle_problems"), {"runs": runs}).fetchall()]
                    values = {"runs": runs, "problems": problems}
                    for statement in split_statements(internal_sql("settle")):
                        con.execute(statement, {k: v for k, v in values.items() if f"${k}" in statement})
                except duckdb.TransactionException as exc:  # another writer's commit: retried on a lake
                    raise _commit_error(exc, lake=self.lake) from exc
                except duckdb.Error as exc:  # rolled back by transaction(); nothing settled
                    raise StoreError(f"settling the estimates failed: {_first_line(exc)}") from exc
                return runs, problems

        runs, problems = self.retrying(write)
        return Settled(runs, len(problems), self.scalar(internal_sql("count_unsettled_problems")),
                       time.perf_counter() - started)

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
            except duckdb.TransactionException as exc:  # outside a transaction: an autocommit statement's commit
                raise _commit_error(exc, lake=self.lake and not self._in_transaction) from exc
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
        cursor = self._cursor()
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

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor of its own (results streamed beside other statements)."""
        with self._lock:
            cursor = self.con.cursor()
            if self.lake:  # a cursor is a new connection: it starts in the in-memory catalog
                cursor.execute(f"USE {LAKE_ALIAS}")
        return cursor

    def arrow_batches(self, sql: str, rows_per_batch: int = 100_000) -> Iterator[pa.Table]:
        """Run SQL and yield its result as Arrow tables of at most ``rows_per_batch`` rows."""
        for rows in self._record_batches(sql, rows_per_batch):
            yield pa.Table.from_batches([rows])

    def _record_batches(self, sql: str, rows_per_batch: int) -> Iterator[pa.RecordBatch]:
        cursor = self._cursor()
        try:
            yield from cursor.execute(sql).fetch_record_batch(rows_per_batch)
        except duckdb.Error as exc:
            raise StoreError(str(exc).strip()) from exc
        finally:
            cursor.close()

    def saved_query(self, name: str) -> QueryResult:
        queries = saved_queries()
        if name not in queries:
            raise StoreError(f"no saved query {name!r}; available: {', '.join(queries)}")
        return self.query((self.lake and lake_sql(f"queries/{name}")) or queries[name].read_text())

    def insert_rows(self, table: str, rows: Iterable[dict[str, Any]], con: Any = None, skip_existing: bool = True) -> int:
        """Insert rows (dicts keyed by column); rows whose key already exists are skipped
        (``skip_existing=False`` for tables without a key, e.g. ``eval_results``).

        Goes through Arrow so thousands of rollouts cost one statement, not thousands.
        Returns the number of rows actually inserted.
        """
        rows = list(rows)
        if not rows:
            return 0
        if self.lake and skip_existing and table_keys(table):
            # No constraint keeps a key unique in a lake: two writers could each find a key absent
            # and both insert it. So a keyed insert runs in a transaction that moves the lease
            # clock: of two at once, DuckLake commits one and fails the other (StoreConflict),
            # whose retry then sees the first one's rows.
            if not self._in_transaction:
                return self.retrying(lambda: self._insert_in_transaction(table, rows))
            if not self._serialized:
                (con or self.con).execute(lake_sql("tick_lease_clock"))
                self._serialized = True
        with self._lock:
            target = con or self.con
            target.register("batch", pa.Table.from_pylist(rows))
            try:
                before = target.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                if self.lake:
                    target.execute(_lake_insert(table, table_keys(table) if skip_existing else []))
                else:
                    verb = "INSERT OR IGNORE" if skip_existing else "INSERT"
                    target.execute(f"{verb} INTO {table} BY NAME SELECT * FROM batch")
                return target.execute(f"SELECT count(*) FROM {table}").fetchone()[0] - before
            finally:
                target.unregister("batch")

    def _insert_in_transaction(self, table: str, rows: list[dict[str, Any]]) -> int:
        with self.transaction():
            return self.insert_rows(table, rows)

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
        """Set a run's final status. On a lake, outside a transaction, an update that conflicts
        with another writer's is retried (inside one, the caller's :meth:`retrying` does it)."""
        def write() -> None:
            self.query(internal_sql("finish_run"), {"status": status, "error": error, "run_id": run_id})

        if self.lake and not self._in_transaction:
            self.retrying(write)
        else:
            write()


def _lake_insert(table: str, keys: list[list[str]]) -> str:
    """``INSERT OR IGNORE`` for a lake (no constraints there): the batch's rows whose keys are in
    neither the table nor earlier in the batch."""
    sql = f"INSERT INTO {table} BY NAME SELECT * FROM batch b"
    if not keys:
        return sql
    absent = " AND ".join(
        f"NOT EXISTS (SELECT 1 FROM {table} t WHERE " + " AND ".join(f"t.{c} IS NOT DISTINCT FROM b.{c}" for c in key) + ")"
        for key in keys)
    first = f"row_number() OVER (PARTITION BY {', '.join(keys[0])}) = 1"
    return f"{sql} WHERE {absent} QUALIFY {first}"


def split_statements(sql: str) -> list[str]:
    """The statements of a file of several (each ends with ``;`` at a line's end), comments
    dropped: DuckDB prepares one statement at a time when it binds parameters."""
    text = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in re.split(r";\s*\n", text + "\n") if s.strip()]


def _lock_holder(message: str) -> str | None:
    """'PID 123' (and program) from DuckDB's lock-conflict message; None for other IO errors."""
    if "lock" not in message.lower():
        return None
    match = re.search(r"held in (\S+) \(PID (\d+)\)", message)
    return f"PID {match.group(2)}, {match.group(1)}" if match else "unknown process"


def _commit_error(exc: duckdb.TransactionException, lake: bool) -> StoreError:
    """A failed commit as the store's error: a lake commit that lost to another writer is a
    StoreConflict (worth running again: DuckLake says "Transaction conflict", or that its own
    retries on a concurrent snapshot ran out); any other failure (a type DuckLake cannot store,
    say) is a StoreError with its reason."""
    message = str(exc)
    if lake and ("conflict" in message.lower() or "maximum retry count" in message):
        return StoreConflict(f"lake commit conflicted with another writer: {' '.join(message.split())}")
    return StoreError(message.strip())


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _ids(problem_ids: Sequence[str]) -> pa.Table:
    return pa.table({"problem_id": pa.array(list(problem_ids), type=pa.string())})


def to_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)
