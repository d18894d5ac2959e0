"""``prmf migrate-store``: copy a whole store between a DuckDB file and a DuckLake (either way),
table by table, streamed through Arrow record batches (a store of millions of rollouts never
sits in memory whole), with the row counts of every table checked afterwards.

Work leases (``claims`` and a lake's lease tables) are not copied: they describe runs going on
in the source, not data. Copy a store no run is writing. Nor are the settled estimates (migration
015, derived from the rest): the copy settles its own once the rows are in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb

from tasks.lake import is_lake, lake_tables, redact
from tasks.progress import progress
from tasks.store import Store, StoreError, internal_sql, latest_schema_version

#: Tables that are not data: leases of running work, the migration ledger (the destination
#: records its own), and a lake's own bookkeeping.
NOT_COPIED = {"claims", "schema_migrations", "lease_beats", "lease_clock", "lake_objects"}


@dataclass(frozen=True)
class CopiedTable:
    table: str
    source_rows: int
    destination_rows: int

    @property
    def ok(self) -> bool:
        return self.source_rows == self.destination_rows


def data_tables() -> list[str]:
    """The store's data tables, in the derived schema's order."""
    names = [statement.split()[2] for statement in lake_tables()]
    return [name for name in names if name not in NOT_COPIED]


def copy_store(source: str | Path, destination: str | Path, rows_per_batch: int = 100_000) -> list[CopiedTable]:
    """Copy every data table of ``source`` into ``destination`` (a new DuckDB file, or a lake with
    no rows yet); returns each table's row counts on both sides."""
    source, destination = str(source), str(destination)
    if source == destination:
        raise StoreError("source and destination are the same store")
    if not is_lake(destination) and Path(destination).exists():
        raise StoreError(f"destination {destination} exists; copy into a new file")
    latest = latest_schema_version()
    with Store(source, read_only=True) as src:
        version = src.scalar(internal_sql("schema_version")) or 0
        if version != latest:
            raise StoreError(f"source {redact(source)} is at schema version {version}, this code at {latest}: open it "
                             f"once with a writing command (e.g. `prmf ingest`) to migrate it, then copy")
        with Store(destination) as dst:
            tables = data_tables()
            filled = [t for t in tables if dst.scalar(f"SELECT count(*) FROM {t}")]
            if filled:
                raise StoreError(f"destination {redact(destination)} already holds rows (in {', '.join(filled[:5])}); "
                                 f"copy into an empty store")
            total = sum(src.scalar(f"SELECT count(*) FROM {t}") for t in tables)
            with progress("rows copied", total) as advance:
                for table in tables:
                    _copy_table(src, dst, table, rows_per_batch, advance)
            dst.settle()  # the settled estimates are not copied: the copy settles its own
            return [CopiedTable(t, src.scalar(f"SELECT count(*) FROM {t}"), dst.scalar(f"SELECT count(*) FROM {t}"))
                    for t in tables]


def _copy_table(src: Store, dst: Store, table: str, rows_per_batch: int, advance: Callable[[int], None]) -> None:
    columns = [name for (name,) in src.query(
        "SELECT column_name FROM duckdb_columns() WHERE table_name = ? AND database_name = current_database() "
        "ORDER BY column_index", [table]).rows]
    select = f"SELECT {', '.join(columns)} FROM {table}"
    with dst.transaction() as con:  # a table is copied whole or not at all
        for batch in src.arrow_batches(select, rows_per_batch):
            con.register("batch", batch)
            try:
                con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM batch")
            except duckdb.Error as exc:
                raise StoreError(f"copying {table}: {str(exc).strip().splitlines()[0]}") from exc
            finally:
                con.unregister("batch")
            advance(batch.num_rows)
