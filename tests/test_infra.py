"""infra/prefect.yaml: every deployment's entrypoint is a real Prefect flow of this repository."""

from __future__ import annotations

import importlib
from pathlib import Path

import yaml
from prefect import Flow

REPO = Path(__file__).resolve().parent.parent


def test_deployment_entrypoints_are_flows():
    spec = yaml.safe_load((REPO / "infra" / "prefect.yaml").read_text())
    names = set()
    for deployment in spec["deployments"]:
        path, attribute = deployment["entrypoint"].split(":")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        flow = getattr(module, attribute)
        assert isinstance(flow, Flow), deployment["name"]
        names.add(flow.name)
    assert {"label", "evaluate", "retrain", "factory"} <= names
