"""The reward-model registry (``prm_models``): look models up, promote them.

A model is *promoted* when it beat the previously promoted model of its kind on the selection
metric (see :mod:`tasks.promotion`); at most one model per kind is promoted. Its data snapshot is
the baseline of the factory's growth trigger (:mod:`tasks.growth`).
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.store import Store, StoreError, internal_sql


class RegistryError(StoreError):
    """A model id that is not registered, or no model of the wanted kind."""


#: The kinds a slot takes when a model id is named: the PRM slot takes any verifier that scores
#: steps (a step-tag PRM or an implicit PRM). A slot's default is always a model of its own kind.
ACCEPTED_KINDS: dict[str, tuple[str, ...]] = {"prm": ("prm", "implicit")}
_KIND_NAMES = {"prm": "a PRM", "orm": "an ORM", "implicit": "an implicit PRM"}


def _kind_name(kind: str) -> str:
    return _KIND_NAMES.get(kind, f"a {kind!r} model")


def get_model(store: Store, model_id: str | None = None, kind: str | None = None) -> dict[str, Any]:
    """One ``prm_models`` row: ``model_id`` (checked to fit the ``kind`` slot when given: the
    ``prm`` slot takes ``prm`` and ``implicit`` models), or else the promoted model of ``kind``
    (default prm), or else its newest."""
    if model_id:
        rows = store.query(internal_sql("model_by_id"), {"model_id": model_id}).as_dicts()
        if not rows:
            known = [r[0] for r in store.query(internal_sql("newest_models")).rows]
            raise RegistryError(f"no model {model_id!r} in {store.path}; newest: {', '.join(known) or 'none'}")
        accepted = ACCEPTED_KINDS.get(kind, (kind,)) if kind else None
        if accepted and rows[0]["kind"] not in accepted:
            raise RegistryError(f"model {model_id!r} is {_kind_name(rows[0]['kind'])}, not "
                                f"{' or '.join(_kind_name(k) for k in accepted)}")
        return rows[0]
    kind = kind or "prm"
    rows = store.query(internal_sql("default_model"), {"kind": kind}).as_dicts()
    if not rows:
        raise RegistryError(f"no {kind.upper()} is registered in {store.path} (run `prmf train --kind {kind}` first)")
    return rows[0]


#: A model id that leaves a slot empty (an evaluation without an ORM, or with an ORM only).
NO_MODEL = "none"


def find_model(store: Store, model_id: str | None, kind: str) -> dict[str, Any] | None:
    """Like :func:`get_model`, but None when no model of ``kind`` exists and none was named (a
    named model may be of any kind the slot accepts), or when :data:`NO_MODEL` is named."""
    if model_id == NO_MODEL:
        return None
    if model_id is None and not store.scalar(internal_sql("count_models"), {"kind": kind}):
        return None
    return get_model(store, model_id, kind)


def promoted_model(store: Store, kind: str = "prm") -> dict[str, Any] | None:
    rows = store.query(internal_sql("promoted_model"), {"kind": kind}).as_dicts()
    return rows[0] if rows else None


def promote(store: Store, model_id: str) -> None:
    """Make ``model_id`` the promoted model of its kind (the previous one is demoted), in one
    statement, so it can be part of a caller's transaction."""
    get_model(store, model_id)  # a clear error for an unknown id
    store.query(internal_sql("promote"), {"model_id": model_id})


def label_snapshot(store: Store) -> dict[str, Any]:
    """The store's labelled-data counts now (recorded as every trained model's data snapshot)."""
    return store.query(internal_sql("label_snapshot")).as_dicts()[0]


@task(name="promoted-models", cache_policy=NO_CACHE, task_run_name="promoted-models")
def promoted_models_task(db: str) -> dict[str, str]:
    """The promoted model id per kind (kinds with none are absent)."""
    with Store(db) as store:
        return {kind: row["model_id"] for kind in ("prm", "orm", "implicit") if (row := promoted_model(store, kind))}
