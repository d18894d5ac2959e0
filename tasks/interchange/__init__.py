"""Datasets in and out: the step-label formats (:mod:`.formats`), ``prmf export`` (:mod:`.export`)
and ``prmf import`` (:mod:`.imports`)."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.config import ExportConfig


@task(name="export", cache_policy=NO_CACHE, task_run_name="export-{config.format}")
def export_task(config: ExportConfig, command: str, run_id: str) -> object:
    from tasks.interchange.export import export_dataset
    from tasks.store import Store

    with Store(config.db) as store:
        return export_dataset(store, config, command, run_id)


@task(name="push-to-hub", cache_policy=NO_CACHE)
def push_to_hub_task(out: Path, repo: str) -> None:
    """The exported DatasetDict and its card to a hub dataset repo (GPU/cloud users; nothing here
    reaches a hub)."""
    import datasets
    from huggingface_hub import HfApi

    datasets.load_from_disk(str(Path(out) / "hf")).push_to_hub(repo)
    HfApi().upload_file(path_or_fileobj=str(Path(out) / "README.md"), path_in_repo="README.md", repo_id=repo,
                        repo_type="dataset")
