"""The Ray side of ``--executor ray``: Prefect's Ray task runner (``prefect-ray``) for the configured
cluster. Ray is imported only here and only when a run asks for it: it costs every other command
a second of start-up."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tasks.config import ExecutorSettings
from tasks.labelling.shards import forwarded_env


def ray_init_kwargs(settings: ExecutorSettings, env: dict[str, str] | None = None) -> tuple[str, dict[str, Any]]:
    """(address, ``ray.init`` keyword arguments) for the runner. No address: a Ray instance of
    this run's own, on 127.0.0.1 and without a dashboard. The workers get this process's
    :func:`forwarded_env` (store, models, Prefect API): on a cluster they do not inherit it."""
    env_vars = forwarded_env(env)
    if not env_vars.get("PREFECT_API_URL"):
        env_vars["PREFECT_API_URL"] = prefect_api_url()
    kwargs: dict[str, Any] = {"runtime_env": {"env_vars": env_vars}, "namespace": "prmf"}
    if settings.ray_address is None:
        # "local" makes ray.init start an instance even when this machine has a cluster running.
        return "local", {**kwargs, "include_dashboard": False, "_node_ip_address": "127.0.0.1"}
    return settings.ray_address, kwargs


def prefect_api_url() -> str:
    """The Prefect API this process reports to. Without a configured server that is the ephemeral
    one Prefect started for this process (on 127.0.0.1): the shards must report to it too, not
    each start an empty one of its own. On a cluster of several machines, set PREFECT_API_URL to a
    server they can all reach."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return str(client.api_url)


def ray_task_runner(settings: ExecutorSettings) -> Any:
    """A ``prefect_ray.RayTaskRunner`` connected to ``settings.ray_address``."""
    try:
        from prefect_ray import RayTaskRunner
    except ImportError as exc:  # the lock installs it; a trimmed environment may not have it
        raise RuntimeError("--executor ray needs prefect-ray and ray: pip install 'prm-factory[ray]'") from exc
    address, kwargs = ray_init_kwargs(settings)
    return RayTaskRunner(address=address, init_kwargs=kwargs)


def ray_cluster_resources() -> dict[str, float]:
    """The connected cluster's total resources (CPU, GPU, memory, ...)."""
    import ray

    return dict(ray.cluster_resources())


@contextmanager
def remote_options(**options: Any) -> Iterator[None]:
    """``prefect_ray.context.remote_options``: tasks submitted inside ask Ray for these resources."""
    from prefect_ray.context import remote_options as ray_remote_options

    with ray_remote_options(**options):
        yield
