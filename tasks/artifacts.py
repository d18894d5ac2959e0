"""Prefect artifacts: what a flow run shows in the UI (tables, the accuracy plot, decisions).

Artifacts need a flow or task run context; the plain functions here are called from tasks.
Keys are stable per subject (``eval-arith-test``), so the UI keeps a history per key.
"""

from __future__ import annotations

import base64
import shlex
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from tasks.best_of_n import (
    PoolEvaluation,
    compute_plot_path,
    compute_table,
    diagnostics_table,
    plot_accuracy,
    plot_compute,
    results_table,
)
from tasks.ingest import IngestSummary
from tasks.progress import artifact_key
from tasks.promotion import Decision
from tasks.lake import redact
from tasks.store import Store


def publish_evaluation(evaluations: Sequence[PoolEvaluation], plot_path: Path | None = None,
                       aggregation: str = "last") -> None:
    """One table per pool (accuracy [95% CI] per method and N) and one markdown with the plot
    embedded; the plot is also written to ``plot_path`` when given. Pools with beam-search results
    also get the compute-matched table and the accuracy-vs-tokens plot (PRM methods read with
    ``aggregation``)."""
    for evaluation in evaluations:
        columns, rows = results_table(evaluation)
        create_table_artifact(
            [dict(zip(columns, row)) for row in rows],
            key=artifact_key("eval", evaluation.dataset, evaluation.split),
            description=f"best-of-N on {evaluation.dataset}/{evaluation.split}, {evaluation.problems} problems; "
                        f"PRM {evaluation.prm or '-'}, ORM {evaluation.orm or '-'}",
        )
        if evaluation.diagnostics:
            columns, rows = diagnostics_table(evaluation)
            create_table_artifact(
                [dict(zip(columns, row)) for row in rows],
                key=artifact_key("scorers", evaluation.dataset, evaluation.split),
                description=f"scorer diagnostics on {evaluation.dataset}/{evaluation.split}: AUC of each solution "
                            "score against correctness (0.5 = chance) and its rank correlation with length",
            )
    png = plot_accuracy(evaluations, plot_path)
    image = base64.b64encode(png).decode()
    lines = ["# Accuracy vs N", "", f"![accuracy vs N](data:image/png;base64,{image})", ""]
    for e in evaluations:
        lines.append(f"- **{e.dataset}/{e.split}**: {e.problems} problems, PRM `{e.prm or '-'}`, ORM `{e.orm or '-'}`")
    if plot_path is not None:
        lines += ["", f"PNG: [{Path(plot_path).resolve()}](file://{Path(plot_path).resolve()})"]
    create_markdown_artifact("\n".join(lines), key="eval-plot", description="accuracy vs N per dataset")
    searched = [e for e in evaluations if any(r.method.startswith("beam") for r in e.results)]
    if searched:
        publish_compute(searched, aggregation, compute_plot_path(plot_path))


def publish_compute(evaluations: Sequence[PoolEvaluation], aggregation: str, plot_path: Path | None) -> None:
    """Beam search against best-of-N at equal generated tokens: a table per pool and the plot."""
    for evaluation in evaluations:
        columns, rows = compute_table(evaluation, aggregation)
        create_table_artifact(
            [dict(zip(columns, row)) for row in rows],
            key=artifact_key("compute", evaluation.dataset, evaluation.split),
            description=f"accuracy vs generated tokens on {evaluation.dataset}/{evaluation.split} "
                        f"(PRM {evaluation.prm or '-'}, aggregation {aggregation})",
        )
    image = base64.b64encode(plot_compute(evaluations, aggregation, plot_path)).decode()
    create_markdown_artifact(f"# Accuracy vs generated tokens\n\n![accuracy vs tokens](data:image/png;base64,{image})\n",
                             key="eval-compute-plot", description="beam search vs best-of-N at equal tokens")


def publish_decisions(decisions: Sequence[Decision]) -> None:
    create_table_artifact(
        [{k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(d).items()} for d in decisions],
        key="promotion",
        description="new models vs the promoted ones (a first model: vs majority vote) on the validation pools, "
                    "same candidates; paired bootstrap over problems",
    )


def publish_training(results: Sequence[dict[str, Any]]) -> None:
    rows = [{"model": r["model_id"], "train solutions": r["train_examples"], "val solutions": r["val_examples"],
             "base val loss": round(r["val_metrics"]["base_val_loss"], 4), "val loss": round(r["val_metrics"]["val_loss"], 4),
             "val step accuracy": round(r["val_metrics"]["val_accuracy"], 4)} for r in results]
    create_table_artifact(rows, key="training", description="reward models trained in this run")


def publish_label_stats(store: Store) -> None:
    """The label-statistics table (sql/queries/label_stats.sql) and a note on querying the store."""
    rows = store.saved_query("label_stats").as_dicts()
    create_table_artifact([{k: _plain(v) for k, v in row.items()} for row in rows], key="label-stats",
                          description="per dataset: problems, solutions, steps, rollouts, HE/SE rates, "
                                      "agreement with gold step labels, generated tokens and tokens/s")
    path = shlex.quote(redact(store.absolute_location))
    create_markdown_artifact("\n".join([
        "# The DuckLake store" if store.lake else "# The DuckDB store", "", f"`{path}`", "",
        "Query it while flows run (they hold the file only between batches; a lake at any time):", "", "```bash",
        f"prmf query label_stats --db {path}",
        f"prmf query gold_agreement --db {path}",
        f"prmf query models --db {path}",
        f"prmf query \"SELECT dataset, count(*) FROM problems GROUP BY 1\" --json --db {path}",
        f"prmf query retrain_triggers --db {path}",
        f"prmf query promotions --db {path}",
        f"prmf query scorer_diagnostics --db {path}",
        "```", "", "Tables: problems, solutions, steps, work_units, rollouts, runs (every flow run), prm_models, "
        "eval_candidates, eval_results, eval_diagnostics, promotion_decisions, retrain_triggers, quarantine; "
        "views: step_estimates (HE/SE per step), labelled_steps.",
    ]), key="store-guide", description="where the data is and how to query it")


def publish_exhaustion(selected: IngestSummary) -> None:
    """A note on the run page when a data cursor found nothing (or too little) left to label."""
    create_markdown_artifact(f"# Dataset exhausted\n\n{selected.describe_exhaustion()}.\n",
                             key=artifact_key("exhausted", selected.dataset, selected.split),
                             description=f"{selected.dataset}/{selected.split}: the data cursor reached its end")


def _plain(value: Any) -> Any:
    """JSON-friendly cell values (DuckDB returns Decimal for some aggregates)."""
    from decimal import Decimal

    return float(value) if isinstance(value, Decimal) else value


@task(name="publish-label-stats", cache_policy=NO_CACHE, task_run_name="publish-label-stats")
def publish_label_stats_task(db: str) -> None:
    with Store(db) as store:
        publish_label_stats(store)


@task(name="publish-exhaustion", cache_policy=NO_CACHE, task_run_name="publish-exhaustion-{selected.dataset}")
def publish_exhaustion_task(selected: IngestSummary) -> None:
    publish_exhaustion(selected)


@task(name="publish-evaluation", cache_policy=NO_CACHE, task_run_name="publish-evaluation")
def publish_evaluation_task(evaluations: Sequence[PoolEvaluation], plot_path: Path | None = None,
                            aggregation: str = "last") -> None:
    publish_evaluation(evaluations, plot_path, aggregation)


@task(name="publish-retrain", cache_policy=NO_CACHE, task_run_name="publish-training-and-promotion")
def publish_retrain_task(trained: Sequence[dict[str, Any]], decisions: Sequence[Decision]) -> None:
    publish_training(trained)
    publish_decisions(decisions)
