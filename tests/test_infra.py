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


def _compose() -> dict:
    return yaml.safe_load((REPO / "infra" / "compose.gpu.yaml").read_text())


def test_compose_file_describes_one_gpu_node():
    """Docker cannot run here, so the compose file's structure is checked instead."""
    import re

    compose = _compose()
    services = compose["services"]
    assert {"postgres", "prefect-server", "worker", "completer"} <= set(services)
    for name, service in services.items():
        image = service.get("image")
        assert image or "build" in service, name
        if image:
            assert ":" in image and not image.endswith(":latest"), f"{name}: pin the image tag"
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name}: {port} must bind 127.0.0.1"
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            assert source in compose["volumes"], f"{name}: volume {source} is not declared"
    for name in ("completer", "worker"):
        [device] = services[name]["deploy"]["resources"]["reservations"]["devices"]
        assert device["capabilities"] == ["gpu"] and device["count"] == 1
    database_url = services["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    assert database_url.startswith("postgresql+asyncpg://") and "@postgres:5432/" in database_url
    assert services["worker"]["environment"]["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    assert (REPO / services["worker"]["build"]["dockerfile"]).is_file()

    # Every variable the file reads is documented in the example env file.
    used = set(re.findall(r"\$\{(\w+)", (REPO / "infra" / "compose.gpu.yaml").read_text()))
    documented = {line.split("=", 1)[0] for line in (REPO / "infra" / "gpu.env.example").read_text().splitlines()
                  if line and not line.startswith("#")}
    assert used <= documented, used - documented


def test_factory_deployment_is_scheduled_and_its_parameters_validate():
    from tasks.config import FactoryConfig

    spec = yaml.safe_load((REPO / "infra" / "prefect.yaml").read_text())
    [factory] = [d for d in spec["deployments"] if d["name"] == "factory"]
    [schedule] = factory["schedules"]
    assert schedule["cron"] == "0 */6 * * *" and schedule["active"]
    config = FactoryConfig.model_validate(factory["parameters"]["config"])
    assert config.retrain_by == "automation"  # the served factory leaves retraining to the growth trigger
    assert config.label.dataset.select == "next"  # every scheduled run labels problems not labelled yet
    [retrain] = [d for d in spec["deployments"] if d["name"] == "retrain"]
    [trigger] = retrain["triggers"]  # the whole factory configuration travels with the growth event
    assert trigger["parameters"] == {"config": "{{ event.payload.retrain_config }}"}
    pools = {d["work_pool"]["name"] for d in spec["deployments"]}
    assert pools == {"prmf"} and "--pool\", \"prmf\"" in (REPO / "infra" / "compose.gpu.yaml").read_text()


def test_ray_cluster_file_starts_the_project_with_ray_and_keeps_the_dashboard_local():
    """`ray up` cannot run here, so the cluster file's structure is checked instead."""
    cluster = yaml.safe_load((REPO / "infra" / "ray-cluster.yaml").read_text())
    assert cluster["provider"]["type"] == "local" and cluster["provider"]["head_ip"]
    assert {"cluster_name", "auth", "setup_commands", "head_start_ray_commands", "worker_start_ray_commands"} <= set(cluster)
    install = " ".join(cluster["setup_commands"])
    assert ".[gpu,ray]" in install  # the GPU vLLM build, ray and prefect-ray
    [head_start] = [c for c in cluster["head_start_ray_commands"] if "--head" in c]
    assert "--dashboard-host=127.0.0.1" in head_start and "HF_HUB_OFFLINE=1" in head_start
    assert all("HF_HUB_OFFLINE=1" in c for c in cluster["worker_start_ray_commands"] if " start " in c)
    # The file store keeps every shard on one machine: no workers until the store is shared.
    assert cluster["provider"]["worker_ips"] == [] and cluster["max_workers"] == 0
    import tomllib

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(r.startswith("prefect-ray==") for r in extras["ray"]) and any(r.startswith("ray[default]==") for r in extras["ray"])
