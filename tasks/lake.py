"""DuckLake stores: the same tables, views and saved queries in a DuckLake catalog (PostgreSQL for
many writers on many machines, or a local DuckDB catalog file), with data files under a data path.

``--db ducklake:postgres:dbname=prmf host=10.0.0.5 user=prmf`` opens one; the first open needs
``PRMF_LAKE_DATA_PATH`` (a folder here, object storage in production): DuckLake records it in the
catalog, and later opens find it there.

Why a separate schema. DuckLake has no PRIMARY KEY, UNIQUE, CHECK, foreign keys, sequences or
indexes, so the lake's tables are derived from the migrated DuckDB schema (:func:`lake_tables`:
columns, types, NOT NULL and defaults), and the keys the file store enforces become the
anti-joins of :meth:`tasks.store.Store.insert_rows` (:func:`table_keys`). Migrations up to
:data:`LAKE_BASE_VERSION` are folded into that derived schema; later ones must run on a lake as
written (``tests/test_lake.py`` applies each).

Why insert-only writes. DuckLake commits concurrent inserts into one table, but a transaction
that updates or deletes rows of a table another transaction changed meanwhile fails to commit
(measured with 1.5.5 on PostgreSQL: insert/insert commits; delete/delete, update/update and
insert/delete on one table do not). So the lake's work leases are insert-only
(``sql/lake/*.sql``), and the rare updates (a run's status) are retried on conflict.

The extensions come from the pinned ``duckdb-extension-ducklake`` and
``duckdb-extension-postgres-scanner`` packages (the ``lake`` extra, in the lock), loaded from
their files: never a download at run time.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import time
from pathlib import Path

import duckdb

LAKE_PREFIX = "ducklake:"

#: The store's catalog name once a lake is attached (``USE``d, so SQL names tables unqualified).
LAKE_ALIAS = "lake"

#: Migrations folded into the derived lake schema (every ``sql/ddl`` file up to this version).
LAKE_BASE_VERSION = 14

ATTACH_ATTEMPTS = 5

_EXTENSIONS = {"ducklake": "duckdb_extension_ducklake", "postgres_scanner": "duckdb_extension_postgres_scanner"}


class LakeError(RuntimeError):
    """A lake that cannot be opened (missing extension package, no data path, bad catalog)."""


def is_lake(location: str | os.PathLike) -> bool:
    return str(location).startswith(LAKE_PREFIX)


def extension_file(name: str) -> Path:
    """The ``.duckdb_extension`` file of ``name`` for the installed duckdb, from its package."""
    package = _EXTENSIONS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise LakeError(f"DuckLake stores need the {package.replace('_', '-')} package: "
                        f"pip install -e '.[lake]' (make setup installs it)")
    path = Path(list(spec.submodule_search_locations)[0]) / "extensions" / f"v{duckdb.__version__}" / f"{name}.duckdb_extension"
    if not path.is_file():
        raise LakeError(f"{package} has no {name} extension for duckdb {duckdb.__version__} (looked for {path}); "
                        f"install the version of {package.replace('_', '-')} that matches duckdb")
    return path


def connect(location: str, read_only: bool = False,
            data_path: str | os.PathLike | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the lake at ``location`` attached (read-only if asked) and in use.
    ``data_path`` (default ``PRMF_LAKE_DATA_PATH``) is needed when the catalog is new."""
    catalog = location[len(LAKE_PREFIX):]
    con = duckdb.connect()
    try:
        con.execute(f"LOAD '{extension_file('ducklake')}'")
        if catalog.startswith("postgres:"):
            con.execute(f"LOAD '{extension_file('postgres_scanner')}'")
        data_path = data_path or os.environ.get("PRMF_LAKE_DATA_PATH")
        options = ["READ_ONLY"] if read_only else []
        if data_path and not read_only:
            Path(data_path).mkdir(parents=True, exist_ok=True)
            options.append(f"DATA_PATH '{_quote(str(data_path))}'")
        attach = f"ATTACH '{_quote(location)}' AS {LAKE_ALIAS}" + (f" ({', '.join(options)})" if options else "")
        for attempt in range(ATTACH_ATTEMPTS):
            try:
                con.execute(attach)
                break
            except duckdb.Error as exc:
                # Two processes opening a new catalog at once: DuckLake's own initialisation of
                # one fails on the tables the other just created; a second attach finds them.
                racing = any(m in str(exc) for m in ("already exists", "duplicate key", "Failed to initialize DuckLake"))
                if not racing or attempt == ATTACH_ATTEMPTS - 1:
                    raise
                time.sleep(0.2 * (attempt + 1))
        con.execute(f"USE {LAKE_ALIAS}")
    except duckdb.Error as exc:
        con.close()
        hint = ("" if data_path else " (a new lake needs a data path: set PRMF_LAKE_DATA_PATH)") if not read_only \
            else " (is it a lake yet? `prmf label` or `prmf migrate-store` makes one)"
        raise LakeError(f"cannot open lake {redact(location)}: {str(exc).strip().splitlines()[0]}{hint}") from exc
    return con


def redact(location: str) -> str:
    """The location without a ``password=...`` part, for messages and logs."""
    return " ".join("password=***" if part.lower().startswith("password=") else part for part in location.split(" "))


def _quote(text: str) -> str:
    return text.replace("'", "''")


@functools.cache
def _migrated_schema() -> tuple[dict[str, list[tuple[str, str, bool, str | None]]], dict[str, list[list[str]]]]:
    """Every ``sql/ddl`` migration up to the base version applied to an in-memory DuckDB: each
    table's columns (name, type, nullable, default) and key constraints."""
    from tasks.store import internal_sql, migration_files

    con = duckdb.connect()
    con.execute(internal_sql("create_schema_migrations"))
    for version, path in migration_files():
        if version <= LAKE_BASE_VERSION:
            con.execute(path.read_text())
    columns: dict[str, list[tuple[str, str, bool, str | None]]] = {}
    for table, column, data_type, nullable, default in con.execute(
        "SELECT table_name, column_name, data_type, is_nullable, column_default FROM duckdb_columns() "
        "WHERE database_name = 'memory' AND schema_name = 'main' AND NOT internal ORDER BY table_name, column_index"
    ).fetchall():
        columns.setdefault(table, []).append((column, data_type, nullable, default))
    references: dict[str, set[str]] = {table: set() for table in columns}
    for table, referenced in con.execute(
        "SELECT table_name, referenced_table FROM duckdb_constraints() WHERE constraint_type = 'FOREIGN KEY'"
    ).fetchall():
        references[table].add(referenced)
    columns = {table: columns[table] for table in _referenced_first(references)}
    keys: dict[str, list[list[str]]] = {}
    for table, names in con.execute(
        "SELECT table_name, constraint_column_names FROM duckdb_constraints() "
        "WHERE constraint_type IN ('PRIMARY KEY', 'UNIQUE') ORDER BY table_name, constraint_index"
    ).fetchall():
        keys.setdefault(table, []).append(list(names))
    con.close()
    return columns, keys


def _referenced_first(references: dict[str, set[str]]) -> list[str]:
    """Tables ordered so that each comes after the tables its foreign keys reference (a copy into
    a DuckDB file, which checks them, fills them in this order); ties by name."""
    ordered: list[str] = []
    placed: set[str] = set()
    while len(ordered) < len(references):
        ready = sorted(t for t, refs in references.items() if t not in placed and refs - {t} <= placed)
        if not ready:
            raise LakeError(f"foreign keys form a cycle among {sorted(set(references) - placed)}")
        ordered += ready
        placed.update(ready)
    return ordered


def lake_tables() -> list[str]:
    """``CREATE TABLE`` statements of the lake: the migrated schema's columns, types, NOT NULL
    and defaults, without the constraints DuckLake rejects; referenced tables first."""
    columns, _ = _migrated_schema()
    statements = []
    for table, cols in columns.items():
        parts = []
        for name, data_type, nullable, default in cols:
            part = f"{name} {data_type}"
            if not nullable:
                part += " NOT NULL"
            if default is not None:
                part += f" DEFAULT {default}"
            parts.append(part)
        statements.append(f"CREATE TABLE {table} ({', '.join(parts)})")
    return statements


def table_keys(table: str) -> list[list[str]]:
    """The key column lists (primary key first, then unique ones) the file store enforces on
    ``table``; empty for tables without a key."""
    return _migrated_schema()[1].get(table, [])
