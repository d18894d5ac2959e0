"""``prmf study``: does better process supervision make a better verifier? (the study flow,
:mod:`flows.study`; the report, :mod:`.report`).

Stages. For each slice size N (the first N problems of ``label.dataset``, nested): label it, then
train each verifier of the slice on exactly those problems (``TrainConfig.problem_limit``). Then
every trained verifier is evaluated on the same fixed pools (one ``evaluate`` run each: the test
pool reported, the validation pool choosing its aggregation), the step verifiers of the largest
slice on ProcessBench, and the report is written.

Resuming. Each finished stage is recorded in ``study_stages`` under a key hashed from everything
that determines its result (:func:`stage_key`): the label settings of a slice; the label key, the
slice and the training settings of a verifier; the evaluation settings and the models scored. A
rerun of the same study, killed or finished, looks each stage up (:func:`finished_stage`) and
runs only what is missing; a larger study reuses the slices and verifiers it shares with a
smaller one. Stages themselves are idempotent (label units, pools and scores are stored once), so
a stage killed midway resumes from what it stored.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.config import STUDY_VERIFIERS, EvalConfig, LabelConfig, ProcessBenchConfig, StudyConfig, TrainConfig
from tasks.store import Store, internal_sql, to_json

#: Settings that do not change a stage's result (where files go, how batches are cut).
_IGNORED = {"db", "models_dir", "plot", "retrain_threshold_steps", "batch_prefixes", "lease_s", "grader_workers", "executor",
            "score_batch_size", "score_batch_tokens"}


#: Settings added after studies had recorded stages, at the value that behaves as before: a stage
#: key leaves them out at that value, so stages recorded before they existed are still found.
_ADDED_AT_DEFAULT = {"labels": "factory"}


def _settings(config: Any) -> dict[str, Any]:
    data = config.model_dump(mode="json") if hasattr(config, "model_dump") else dict(config)
    return {k: v for k, v in data.items()
            if k not in _IGNORED and not (k in _ADDED_AT_DEFAULT and v == _ADDED_AT_DEFAULT[k])}


def stage_key(stage: str, settings: dict[str, Any]) -> str:
    """A stage's identity: the hash of its name and the settings that determine its result."""
    return hashlib.sha256(json.dumps([stage, settings], sort_keys=True, default=str).encode()).hexdigest()[:16]


def label_config(config: StudyConfig, size: int) -> LabelConfig:
    """The label run of the slice of ``size`` problems."""
    return config.label.model_copy(update={"dataset": config.label.dataset.model_copy(
        update={"limit": size, "select": "first"})})


def train_config(config: StudyConfig, size: int, verifier: str) -> TrainConfig:
    """The training of ``verifier`` on the slice of ``size`` problems of the label dataset."""
    return config.train.model_copy(update={**STUDY_VERIFIERS[verifier], "problem_limit": size,
                                           "datasets": (config.label.dataset.dataset_name or config.label.dataset.name,)})


def eval_config(config: StudyConfig, prm: str | None, orm: str | None) -> EvalConfig:
    """The fixed pools, scored by one step verifier (``prm``) and one ORM; "none" leaves a slot empty."""
    return config.eval.model_copy(update={"prm": prm or "none", "orm": orm or "none", "plot": None})


def evaluation_plan(config: StudyConfig, models: dict[tuple[int, str], str]
                    ) -> list[tuple[int, tuple[str, ...], str | None, str | None]]:
    """The evaluations a study runs: (slice size, the verifiers each covers, PRM-slot model, ORM).
    One per step verifier; the slice's ORM rides along with each (its scores are cached, so it is
    scored once) and is reported from the first; a slice with an ORM only gets one of its own."""
    plan = []
    for size in config.sizes:
        orm = models.get((size, "orm"))
        steps = [v for v in config.verifiers_at(size) if v != "orm"]
        for i, verifier in enumerate(steps):
            plan.append((size, (verifier, "orm") if orm and i == 0 else (verifier,), models[(size, verifier)], orm))
        if not steps and orm:
            plan.append((size, ("orm",), None, orm))
    return plan


def beam_config(config: StudyConfig, model_id: str, verifier: str, aggregation: str) -> EvalConfig:
    """Beam search guided by ``model_id`` on the test pools, its answer chosen by ``aggregation``
    (the one chosen on validation). An implicit PRM read out as anything but ``sigmoid`` has no Q
    in [0, 1], which the ``pav`` ranking needs: it ranks by its own score (``q``) instead."""
    beam = config.eval.beam.model_copy(update={"select": aggregation})
    if verifier == "implicit" and beam.reward == "pav" and config.eval.implicit_readout != "sigmoid":
        beam = beam.model_copy(update={"reward": "q"})
    return eval_config(config, model_id, None).model_copy(
        update={"methods": ("best_of_n", "beam"), "beam": beam, "validation": ()})


def beam_key(config: StudyConfig, model_id: str, verifier: str, aggregation: str) -> str:
    return stage_key("beam", _settings(beam_config(config, model_id, verifier, aggregation)))


def choose_beam_verifier(store: Store, config: StudyConfig, trained: list[Any]) -> tuple[Any, str] | None:
    """The largest slice's step verifier that guides the beam search, with its aggregation: the
    configured one, or (``best``) the one whose best-of-N at ``selection_n`` is highest on the
    validation pools (mean over them; ties: the first in ``verifiers``). None: no beam search."""
    from tasks.study.report import choose_aggregation, validation_means

    largest = max(t.size for t in trained)
    steps = [t for t in trained if t.size == largest and t.verifier != "orm"]
    if config.beam_verifier == "none" or not steps:
        return None
    results = store.query(internal_sql("study_eval_results"), {"run_ids": [t.eval_run_id for t in steps]}).as_dicts()
    scored = []
    for t in steps:
        validation = [r for r in results if r["split"] == "validation" and r["model_id"] == t.model_id
                      and r["run_id"] == t.eval_run_id]
        how = choose_aggregation(validation, "prm_best_of_n", config.selection_n)
        if how is None:
            continue
        accuracy = validation_means(validation, "prm_best_of_n", config.selection_n)[how]
        scored.append((accuracy, -config.verifiers.index(t.verifier), t, how))
    if config.beam_verifier != "best":
        scored = [s for s in scored if s[2].verifier == config.beam_verifier]
    if not scored:
        return None
    _, _, chosen_verifier, how = max(scored, key=lambda s: s[:2])
    return chosen_verifier, how


@task(name="study-beam-verifier", cache_policy=NO_CACHE)
def choose_beam_verifier_task(config: StudyConfig, trained: list[Any]) -> tuple[Any, str] | None:
    with Store(config.db) as store:
        return choose_beam_verifier(store, config, trained)


def processbench_config(config: StudyConfig, model_id: str) -> ProcessBenchConfig:
    """ProcessBench's math split, the threshold chosen on its gsm8k split (held out from it)."""
    return ProcessBenchConfig(db=config.db, split="math", model=model_id, limit=config.processbench_limit)


def label_key(config: StudyConfig, size: int) -> str:
    return stage_key("label", _settings(label_config(config, size)))


def train_key(config: StudyConfig, size: int, verifier: str) -> str:
    return stage_key("train", {"label": label_key(config, size), **_settings(train_config(config, size, verifier))})


def eval_key(config: StudyConfig, prm: str | None, orm: str | None, pool_file: Path | None = None) -> str:
    """An evaluation's key: its settings and models, and an external pool's content."""
    settings = _settings(eval_config(config, prm, orm))
    if pool_file is not None:
        settings["pool_file"] = hashlib.sha256(Path(pool_file).read_bytes()).hexdigest()
    return stage_key("evaluate", settings)


def processbench_key(config: StudyConfig, model_id: str) -> str:
    return stage_key("processbench", _settings(processbench_config(config, model_id)))


def finished_stage(store: Store, key: str) -> str | None:
    """The result of a finished stage (a run id or a model id), None if it must run (again)."""
    rows = store.query(internal_sql("study_stage"), {"stage_key": key}).rows
    return rows[0][0] if rows else None


def record_stage(store: Store, key: str, stage: str, result_id: str, settings: dict[str, Any],
                 run_id: str | None) -> None:
    store.query(internal_sql("forget_study_stage"), {"stage_key": key})
    store.insert_rows("study_stages", [{"stage_key": key, "stage": stage, "result_id": result_id,
                                        "settings": to_json(settings), "run_id": run_id}])


@task(name="study-finished-stage", cache_policy=NO_CACHE, task_run_name="finished-{key}")
def finished_stage_task(db: str, key: str) -> str | None:
    with Store(db) as store:
        return finished_stage(store, key)


@task(name="study-record-stage", cache_policy=NO_CACHE, task_run_name="record-{stage}-{key}")
def record_stage_task(db: str, key: str, stage: str, result_id: str, settings: dict[str, Any],
                      run_id: str | None) -> str:
    with Store(db) as store, store.transaction():
        record_stage(store, key, stage, result_id, settings, run_id)
    return result_id


def study_id(config: StudyConfig) -> str:
    """The study's identity: everything that determines its results."""
    data = config.model_dump(mode="json")
    return stage_key("study", {k: v for k, v in data.items() if k not in ("db", "report_dir")})[:12]


def report_folder(config: StudyConfig) -> Path:
    return config.report_dir or Path(config.db).resolve().parent / f"study-{study_id(config)}"


@task(name="study-report", cache_policy=NO_CACHE, task_run_name="study-report")
def study_report_task(config: StudyConfig, trained: list[Any], label_run_ids: list[str], command: str,
                      wall_s: float | None) -> dict[str, Any]:
    """Build the report from the store, write it next to the store, publish it as an artifact."""
    from prefect.artifacts import create_markdown_artifact

    from tasks.study.report import build_report, embedded_images, write_report

    with Store(config.db) as store:
        report = build_report(store, config, study_id(config), trained, label_run_ids)
    path, text = write_report(report, config, report_folder(config), command, wall_s)
    create_markdown_artifact(embedded_images(text, report.plots), key="study-report",
                             description=f"prmf study {report.study_id}: verifiers vs majority vote, with intervals")
    return {"path": str(path), "bars": {d.dataset: d.bar for d in report.datasets}, "report": report}
