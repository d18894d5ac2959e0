"""The study flow: does better process supervision make a better verifier?

label each slice -> train every verifier on it -> evaluate each on the same fixed pools -> beam
search guided by the verifier best on validation -> ProcessBench for the largest slice's step verifiers -> the report (``tasks/study``).

Run it with ``prmf study``. Every stage is looked up before it runs (``study_stages``), so a killed
or repeated study resumes: only what is missing runs.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from prefect import flow

from flows.evaluate import evaluate
from flows.label import label
from flows.processbench import processbench
from flows.train import train
from tasks.config import StudyConfig
from tasks.models import prepare_model
from tasks.runs import recorded_run
from tasks.study import (
    beam_config,
    beam_key,
    choose_beam_verifier_task,
    eval_config,
    eval_key,
    evaluation_plan,
    finished_stage_task,
    label_config,
    label_key,
    processbench_config,
    processbench_key,
    record_stage_task,
    study_report_task,
    train_config,
    train_key,
)
from tasks.study.report import TrainedVerifier


def _stage(config: StudyConfig, key: str, stage: str, settings: Any, run: Any, run_id: str) -> str:
    """The stage's recorded result, or run it (``run()`` returns its result id) and record that."""
    db = str(config.db)
    found = finished_stage_task(db, key)
    if found is not None:
        return found
    return record_stage_task(db, key, stage, run(), settings.model_dump(mode="json"), run_id)


@flow(name="study", flow_run_name="study-{config.label.dataset.name}", log_prints=True)
def study(config: StudyConfig = StudyConfig(), command: str = "prmf study") -> dict[str, Any]:
    """Label growing slices, train every verifier on each, compare them on one fixed pool."""
    started = time.perf_counter()
    prepare_model(config.train.base_model)
    with recorded_run(config.db, "study", config) as run_id:
        models: dict[tuple[int, str], str] = {}
        label_runs: dict[int, str] = {}
        for size in config.sizes:
            labelling = label_config(config, size)
            label_runs[size] = _stage(config, label_key(config, size), "label", labelling,
                                      lambda c=labelling: label(c)["run_id"], run_id)
            for verifier in config.verifiers_at(size):
                training = train_config(config, size, verifier)
                models[(size, verifier)] = _stage(config, train_key(config, size, verifier), "train", training,
                                                  lambda c=training: train(c)["model_id"], run_id)
        largest = config.sizes[-1]
        trained = []
        for size, covered, prm, orm in evaluation_plan(config, models):
            evaluating = eval_config(config, prm, orm)
            eval_run = _stage(config, eval_key(config, prm, orm), "evaluate", evaluating,
                              lambda c=evaluating: evaluate(c)["run_id"], run_id)
            pool_runs = tuple(  # external pools: the largest slice's verifiers only
                _stage(config, eval_key(config, prm, orm, pool), "evaluate", evaluating,
                       lambda c=evaluating, f=pool: evaluate(c, pool_file=f)["run_id"], run_id)
                for pool in (config.pools if size == largest else ()))
            trained += [TrainedVerifier(size, v, models[(size, v)], eval_run, pool_run_ids=pool_runs) for v in covered]
        if (beam := choose_beam_verifier_task(config, trained)) is not None:  # chosen on validation
            guide, how = beam
            searching = beam_config(config, guide.model_id, guide.verifier, how)
            beam_run = _stage(config, beam_key(config, guide.model_id, guide.verifier, how), "evaluate", searching,
                              lambda c=searching: evaluate(c)["run_id"], run_id)
            trained[trained.index(guide)] = replace(guide, beam_run_id=beam_run)
        if config.processbench_limit:
            for i, t in enumerate(trained):
                if t.size == largest and t.verifier != "orm":
                    checking = processbench_config(config, t.model_id)
                    pb_run = _stage(config, processbench_key(config, t.model_id), "processbench", checking,
                                    lambda c=checking: processbench(c)["run_id"], run_id)
                    trained[i] = replace(t, processbench_run_id=pb_run)
        report = study_report_task(config, trained, list(label_runs.values()), command,
                                   time.perf_counter() - started)
        for dataset, bar in report["bars"].items():
            print(f"{dataset}: the bar is {'met' if bar['met'] else 'not met'}\n{bar['text']}")
        print(f"report: {report['path']}")
    return {"run_id": run_id, "models": {f"{s}/{v}": m for (s, v), m in models.items()}, "trained": trained,
            "report": report}
