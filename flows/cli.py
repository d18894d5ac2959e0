"""``prmf``: the command line of prm-factory. Every command drives a flow or the store.

    prmf label --dataset arith --limit 50 --solutions 4 --rollouts 8
    prmf ingest --dataset jsonl --path problems.jsonl --answer-kind numeric
    prmf import data/formats/samples_math-shepherd.jsonl --format math-shepherd   # public step labels
    prmf query label_stats            # a saved query from sql/queries/
    prmf query "SELECT count(*) FROM rollouts" --json
    prmf train --kind prm --target he # fine-tune a PRM on the labels, register it in prm_models
    prmf eval --dataset arith --n-max 8 --plot acc.png   # best-of-N on stored candidate pools
    prmf eval --pool candidates.jsonl # an external pool (question, answer, responses[, scores, correct])
    prmf processbench --split math    # earliest-error F1, threshold chosen on gsm8k
    prmf gold-steps                   # verifiers' step scores vs arith gold step labels
    prmf study                        # label slices, train every verifier, compare on one pool, report
    prmf export OUT --format trl      # the labels as a dataset (trl | math-shepherd | openrlhf | pairs | processbench)
    prmf score --question Q --solution "step 1\nstep 2"
    prmf factory --threshold 500      # label -> growth check -> retrain/evaluate/promote when due
    prmf model prepare                # convert the embedded SmolLM2 once
    prmf demo                         # what `make demo` runs
"""

from __future__ import annotations

import datetime as _dt
import decimal
import contextlib
import json
import os
import shlex
import sys
import warnings
from pathlib import Path
from collections.abc import Callable
from typing import Annotated, Any, Optional

# Quiet by default: vLLM logs every engine detail at INFO; --verbose restores it.
os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
# Logs are diagnostics: stdout carries only results (tables, --json), so scripts can parse it.
os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Flow and task state lines would interleave with the progress bars; --verbose brings them back.
_VERBOSE = any(a in ("-v", "--verbose") for a in sys.argv[1:2])
if not _VERBOSE:
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
# Library deprecation chatter (torch.distributed inside vLLM) is not the user's concern; the
# variable also reaches the engine's worker processes.
os.environ.setdefault("PYTHONWARNINGS", "ignore::FutureWarning,ignore::DeprecationWarning")
warnings.filterwarnings("ignore", category=FutureWarning)

import typer  # noqa: E402
from pydantic import ValidationError  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

app = typer.Typer(help="prm-factory: process-supervision data for PRMs (Math-Shepherd labelling).",
                  no_args_is_help=True, pretty_exceptions_enable=False)
model_app = typer.Typer(help="Model preparation.", no_args_is_help=True)
app.add_typer(model_app, name="model")
# Piped output (files, `| less`) gets wide tables instead of rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True)

from tasks.config import LabelConfig  # noqa: E402

_D = LabelConfig()  # defaults shown in --help come from the one configuration model
DbOption = Annotated[Optional[Path], typer.Option("--db", help=(
    "the store: a DuckDB file, or a DuckLake location ducklake:postgres:dbname=D host=H user=U (a new lake: set "
    "PRMF_LAKE_DATA_PATH) (default: $PRMF_DB or ./prmf.duckdb)"))]
ImplicitVerifierOption = Annotated[Optional[bool], typer.Option(
    "--implicit/--no-implicit", help="also train an implicit PRM (solution correctness only, no step labels) and "
    "decide its promotion against the promoted implicit PRM (default: config train_implicit, off)")]
StepFormatOption = Annotated[Optional[str], typer.Option(
    "--step-format", help="line | paragraph | marker: how solutions split into steps (default line)")]
StrategyOption = Annotated[Optional[str], typer.Option(
    "--strategy", help=f"labelling strategy: naive | early_stop | binary_search | binary_search+early_stop, each "
    f"optionally +root (default {_D.strategy}; see README, Labelling strategies)")]
ConfigOption = Annotated[Optional[Path], typer.Option(
    "--config", help="JSON file with this command's configuration (tasks/config.py); flags override it")]
# Options of the commands that run a factory configuration (factory, retrain).
EvalLimitOption = Annotated[Optional[int], typer.Option(help="problems per test pool (default 40)")]
ValidationLimitOption = Annotated[Optional[int], typer.Option(help="problems per validation pool (default 40)")]
NMaxOption = Annotated[Optional[int], typer.Option(help="candidates per evaluation problem (default 8)")]
ConfidenceOption = Annotated[Optional[float], typer.Option(
    help="one-sided confidence a new model's validation gain must reach (default 0.95)")]
ShowConfigOption = Annotated[bool, typer.Option(
    "--show-config", help="print the resolved configuration as JSON (what a deployment run would receive) and exit")]


def _fail(message: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {message}", soft_wrap=True)  # one line, greppable
    raise typer.Exit(code)


def _user_errors() -> tuple[type[BaseException], ...]:
    from tasks.completers import CompleterError
    from tasks.datasets import DatasetError
    from tasks.models import ModelError
    from tasks.store import StoreError
    from tasks.training import TrainingError
    from tasks.verifiers import VerifierError

    return (CompleterError, DatasetError, ModelError, StoreError, TrainingError, VerifierError, FileNotFoundError)


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for e in exc.errors():
        where = ".".join(str(p) for p in e["loc"]) or "config"
        parts.append(f"{where}: {e['msg']}")
    return "invalid configuration: " + "; ".join(parts)


def _read_config_file(path: Path | None) -> dict[str, Any]:
    """The JSON of a --config file ({} without one); an unreadable file is a one-line error."""
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        _fail(f"cannot read config {path}: {exc}")
    if not isinstance(data, dict):
        _fail(f"config {path}: expected a JSON object, got {type(data).__name__}")
    return data


def _apply_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Set dotted-key flag values (``label.dataset.limit``) in config data; None means not given."""
    for dotted, value in overrides.items():
        if value is None:
            continue
        node = data
        *parents, leaf = dotted.split(".")
        for p in parents:
            if not isinstance(node.get(p), dict):
                node[p] = {}
            node = node[p]
        node[leaf] = value
    return data


def _config(model: Any, config_file: Path | None, overrides: dict[str, Any],
            adjust: Callable[[dict[str, Any]], None] | None = None, show: bool = False) -> Any:
    """The one way every command builds its configuration: the ``--config`` file's JSON, validated
    into ``model`` (defaults filled in), then the flags that were given on top (dotted keys; None
    = not given; ``adjust`` for flags that change lists), validated again. A triggered or
    scheduled run receiving the same JSON gets exactly the same configuration. ``show``
    (``--show-config``) prints it as that JSON and exits."""
    try:
        data = model.model_validate(_read_config_file(config_file)).model_dump(mode="json")
        data = _apply_overrides(data, overrides)
        if adjust is not None:
            adjust(data)
        config = model.model_validate(data)
    except ValidationError as exc:
        _fail(_validation_message(exc))
    if show:
        sys.stdout.write(json.dumps(config.public_dump(), indent=1) + "\n")
        raise typer.Exit(0)
    return config


def _db_overrides(db: Path | None, *stages: str) -> dict[str, Any]:
    """--db for a config and its stages (a factory's label, train and eval share one store)."""
    value = str(db) if db else None
    return {"db": value, **{f"{stage}.db": value for stage in stages}}


def _model_overrides(prefix: str, model: str | None, backend: str | None, base_urls: list[str] | None,
                     served_name: str | None) -> dict[str, Any]:
    return {
        f"{prefix}.model": model,
        f"{prefix}.backend": backend,
        f"{prefix}.base_urls": base_urls or None,
        f"{prefix}.served_model_name": served_name,
    }


def _json_default(value: Any) -> Any:
    import dataclasses

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, (_dt.datetime, _dt.date)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    return str(value)


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def _print_rows(columns: list[str], rows: list[tuple], title: str | None = None) -> None:
    table = Table(title=title, show_lines=False)
    for c in columns:
        table.add_column(c)
    for row in rows:
        table.add_row(*(_fmt(v) for v in row))
    console.print(table)


def _print_summary(summary: dict[str, Any]) -> None:
    table = Table(title=f"label run {summary['run_id']}", show_header=False)
    table.add_column("metric", style="bold")
    table.add_column("value", justify="right")
    labels = {
        "dataset": "dataset / split", "problems": "problems", "solutions": "solutions (distinct)",
        "accuracy": "solution accuracy", "steps": "steps", "labelled_prefixes": "labelled step prefixes",
        "rollouts": "rollouts", "he_rate": "HE rate (prefixes)", "mean_se": "mean SE (prefixes)",
        "he_gold_agreement": "HE agreement with gold", "se_gold_agreement": "SE agreement with gold (>=0.5)",
        "gold_steps": "prefixes with gold labels", "quarantined": "quarantined rows",
        "already_labelled": "problems skipped: already labelled (cursor)",
        "prefixes_labelled_now": "prefixes labelled by this run", "prefixes_already_stored": "prefixes already stored",
        "prefixes_by_other_runs": "prefixes stored by concurrent runs",
        "prefixes_recomputed": "prefixes computed twice (lapsed lease)",
        "strategy": "labelling strategy", "label_rounds": "rollout rounds (this run)",
        "inferred_steps_now": "steps inferred (this run)", "contradictions_now": "contradictions found (this run)",
        "reused_rollouts_now": "rollouts reused as solutions (this run)",
        "tokens_generated": "tokens generated (this run)", "tokens_per_s": "generated tokens/s (engine time)",
        "wall_seconds": "wall time (s)", "db": "database",
    }
    for key, label in labels.items():
        value = summary.get(key)
        if key == "dataset":
            value = f"{summary['dataset']} / {summary['split']}"
        if key in ("he_gold_agreement", "se_gold_agreement") and not summary.get("gold_steps"):
            value = "n/a (no gold labels)"
        if key == "already_labelled" and value is None:  # a fixed slice skips nothing
            continue
        table.add_row(label, _fmt(value))
    console.print(table)
    for shard in summary.get("shards", []):
        console.print(f"shard {shard['shard']}: {shard['problems']} problems, {shard['units_labelled']} prefixes "
                      f"and {shard['rollouts']} rollouts stored, on {shard['host']} (pid {shard['pid']})")
    if summary.get("growth"):
        console.print(f"growth: {summary['growth'].describe()}", soft_wrap=True)


def _check_models(config) -> None:
    """Fail fast, before any flow run, on a model setting that cannot be resolved or a store that
    cannot be opened (damaged, locked past PRMF_DB_LOCK_WAIT_S); opening also migrates it."""
    from tasks.models import resolve_model
    from tasks.store import Store

    for settings in (config.generator, config.completer_settings):
        resolve_model(settings.model)
    Store(config.db).close()


def _with_progress(flow_fn, **params: Any) -> Any:
    """Run a flow with rich progress bars for its long tasks."""
    from tasks.progress import RichReporter, set_reporter

    with RichReporter() as reporter:
        set_reporter(reporter)
        try:
            return flow_fn(**params)
        finally:
            set_reporter(None)


def _run_label(config) -> dict[str, Any]:
    from flows.label import label

    return _with_progress(label, config=config)


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="show engine and flow logs")] = False) -> None:
    if verbose:
        os.environ["VLLM_LOGGING_LEVEL"] = "INFO"
    from tasks.guard import guard_descendants

    guard_descendants()  # engines and Prefect's temporary server die with this process


@app.command()
def label(
    dataset: Annotated[Optional[str], typer.Option(help=f"arith | gsm8k | math500 | math | jsonl | hf (default {_D.dataset.name})")] = None,
    split: Annotated[Optional[str], typer.Option(help="dataset split (default per dataset)")] = None,
    limit: Annotated[Optional[int], typer.Option(help=f"number of problems (default {_D.dataset.limit})")] = None,
    solutions: Annotated[Optional[int], typer.Option("--solutions", "-m", help=f"M solutions per problem (default {_D.solutions})")] = None,
    rollouts: Annotated[Optional[int], typer.Option("--rollouts", "-n", help=f"N rollouts per step prefix (default {_D.rollouts})")] = None,
    strategy: StrategyOption = None,
    generator: Annotated[Optional[str], typer.Option(help="generator model: alias, local folder or HF id")] = None,
    completer: Annotated[Optional[str], typer.Option(help="completer model (default: the generator)")] = None,
    backend: Annotated[Optional[str], typer.Option(help="completer backend: vllm | openai | hf")] = None,
    base_url: Annotated[Optional[list[str]], typer.Option("--base-url", help="openai backend server URL (repeatable)")] = None,
    served_model_name: Annotated[Optional[str], typer.Option(help="openai backend: model name on the server")] = None,
    generator_backend: Annotated[Optional[str], typer.Option(help=f"generator backend (default {_D.generator.backend})")] = None,
    temperature: Annotated[Optional[float], typer.Option(help=f"solution sampling temperature (default {_D.generation.temperature})")] = None,
    max_tokens: Annotated[Optional[int], typer.Option(help=f"max tokens per solution (default {_D.generation.max_tokens})")] = None,
    rollout_temperature: Annotated[Optional[float], typer.Option(help=f"rollout temperature (default {_D.rollout.temperature})")] = None,
    rollout_max_tokens: Annotated[Optional[int], typer.Option(help=f"max tokens per rollout (default {_D.rollout.max_tokens})")] = None,
    batch_prefixes: Annotated[Optional[int], typer.Option(help=f"step prefixes per engine call (default {_D.batch_prefixes})")] = None,
    path: Annotated[Optional[str], typer.Option(help="jsonl: file (.jsonl/.parquet); hf: dataset name or path")] = None,
    dataset_name: Annotated[Optional[str], typer.Option(help="jsonl/hf: name stored in problems.dataset")] = None,
    question_field: Annotated[Optional[str], typer.Option(help="jsonl/hf: question field")] = None,
    answer_field: Annotated[Optional[str], typer.Option(help="jsonl/hf: gold answer field")] = None,
    answer_kind: Annotated[Optional[str], typer.Option(help="jsonl/hf: numeric | math")] = None,
    gold_format: Annotated[Optional[str], typer.Option(help="jsonl/hf: plain | gsm8k (text after ####)")] = None,
    arith_seed: Annotated[Optional[int], typer.Option(help="arith: generator seed")] = None,
    select: Annotated[Optional[str], typer.Option(help="first: the first --limit problems (a fixed slice) | next: the next --limit problems not labelled yet with these settings (a cursor)")] = None,
    step_format: StepFormatOption = None,
    lease_s: Annotated[Optional[float], typer.Option(help=f"work lease in seconds for concurrent runners (default {_D.lease_s:.0f})")] = None,
    retrain_threshold: Annotated[Optional[int], typer.Option(help="labelled steps since the promoted PRM that make retraining due (default $PRMF_RETRAIN_THRESHOLD_STEPS or 500)")] = None,
    executor: Annotated[Optional[str], typer.Option(help="local (default): this process | ray: shards on a Ray cluster through Prefect's Ray task runner")] = None,
    ray_address: Annotated[Optional[str], typer.Option(help="ray: the cluster (host:6379, ray://host:10001 or auto; default: a Ray instance of this run's own on 127.0.0.1)")] = None,
    shards: Annotated[Optional[int], typer.Option(help="ray: shards the problems are split into (default: shards-per-gpu per GPU, or one per 2 CPUs)")] = None,
    shards_per_gpu: Annotated[Optional[int], typer.Option(help="ray: shards sharing one GPU (default 1)")] = None,
    config_file: ConfigOption = None,
    show_config: ShowConfigOption = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the run summary as JSON (for scripts)")] = False,
    db: DbOption = None,
) -> None:
    """Sample solutions and label their steps with rollouts under a labelling strategy (the label flow; config: LabelConfig)."""
    overrides = {
        **_db_overrides(db),
        "dataset.name": dataset, "dataset.split": split, "dataset.limit": limit, "dataset.path": path,
        "dataset.dataset_name": dataset_name, "dataset.question_field": question_field,
        "dataset.answer_field": answer_field, "dataset.answer_kind": answer_kind,
        "dataset.gold_format": gold_format, "dataset.arith_seed": arith_seed, "dataset.select": select,
        "solutions": solutions, "rollouts": rollouts, "strategy": strategy, "batch_prefixes": batch_prefixes,
        "lease_s": lease_s, "step_format": step_format,
        "retrain_threshold_steps": retrain_threshold, "generation.temperature": temperature, "generation.max_tokens": max_tokens,
        "rollout.temperature": rollout_temperature, "rollout.max_tokens": rollout_max_tokens,
        "generator.model": generator, "generator.backend": generator_backend,
        "executor.kind": executor, "executor.ray_address": ray_address, "executor.shards": shards,
        "executor.shards_per_gpu": shards_per_gpu,
    }

    def completer_flags(data: dict[str, Any]) -> None:
        if any(v is not None for v in (completer, backend, base_url, served_model_name)):
            _apply_overrides(data, _model_overrides("completer", completer or data["generator"]["model"], backend,
                                                    base_url, served_model_name))

    config = _config(LabelConfig, config_file, overrides, completer_flags, show_config)
    try:
        _check_models(config)
        # --json: stdout carries the summary only; what the run prints (Ray's worker messages
        # among them) goes to stderr.
        with contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext():
            summary = _run_label(config)
    except _user_errors() as exc:
        _fail(str(exc))
    finally:
        from tasks.completers import close_completers

        close_completers()
    if as_json:
        sys.stdout.write(json.dumps(summary, default=_json_default, indent=1) + "\n")
    else:
        _print_summary(summary)


@app.command()
def train(
    kind: Annotated[Optional[str], typer.Option(help="prm (a score per step) | orm (one per solution) | implicit (implicit PRM: trained on solution correctness only, step rewards from beta * log(pi/pi_ref))")] = None,
    target: Annotated[Optional[str], typer.Option(help="prm target: he (hard) | se (soft) | pav (process advantage: the prover's effective reward, squashed to [0, 1]) | gold (the oracle: arith's exact gold step labels, no rollouts)")] = None,
    prover: Annotated[Optional[str], typer.Option(help="pav: the prover, bo<K> (Best-of-K of the base policy, default bo4) or a completer evaluation <completer>@<hash>/N<budget> (SELECT DISTINCT prover FROM step_advantages())")] = None,
    alpha: Annotated[Optional[float], typer.Option(help="pav: reward = Q_pi + alpha * A_mu (default 0.5)")] = None,
    beta: Annotated[Optional[float], typer.Option(help="implicit: reward = beta * log(pi_theta / pi_ref) (default 0.05)")] = None,
    loss: Annotated[Optional[str], typer.Option(help="implicit: ce (cross-entropy on correctness, default) | dpo (pairs of a correct and an incorrect solution of one problem)")] = None,
    class_balance: Annotated[Optional[bool], typer.Option("--class-balance/--no-class-balance", help="weigh steps with target < 0.5 and >= 0.5 equally in the loss (default off)")] = None,
    after_first_error: Annotated[Optional[str], typer.Option(help="prm: drop | keep the steps after the first HE=0 step (not used by pav)")] = None,
    inferred_labels: Annotated[Optional[str], typer.Option(help="prm: include | exclude steps whose label a strategy inferred without rollouts (default include)")] = None,
    base_model: Annotated[Optional[str], typer.Option(help="base causal LM: alias, local folder or HF id")] = None,
    dataset: Annotated[Optional[list[str]], typer.Option("--dataset", help="train only on this dataset (repeatable)")] = None,
    problem_limit: Annotated[Optional[int], typer.Option(help="train only on the first N problems of each dataset split (by source row; the slice `prmf label --limit N` labels)")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="epochs (default 2)")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="solutions per optimizer step (default 8)")] = None,
    micro_batch_size: Annotated[Optional[int], typer.Option(help="solutions per forward/backward pass; gradients accumulate (default: batch size)")] = None,
    precision: Annotated[Optional[str], typer.Option(help="auto (bf16-mixed on GPU, fp32 on CPU) | bf16-mixed | fp32 | bf16")] = None,
    gradient_checkpointing: Annotated[Optional[bool], typer.Option("--gradient-checkpointing/--no-gradient-checkpointing", help="recompute activations in backward (less memory)")] = None,
    lora_r: Annotated[Optional[int], typer.Option(help="train LoRA adapters of this rank instead of every weight (merged on save)")] = None,
    lr: Annotated[Optional[float], typer.Option(help="learning rate (default 2e-5)")] = None,
    val_fraction: Annotated[Optional[float], typer.Option(help="held-out fraction of problems (default 0.15)")] = None,
    labels: Annotated[Optional[str], typer.Option(help="factory (the store's own labels, default) | imported (prmf import) | both")] = None,
    models_dir: Annotated[Optional[Path], typer.Option(help="checkpoint folder (default $PRMF_MODELS or ./models)")] = None,
    config_file: ConfigOption = None,
    show_config: ShowConfigOption = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
    db: DbOption = None,
) -> None:
    """Train a reward model on the store's labels (the train flow; config: TrainConfig) and register it."""
    from tasks.config import TrainConfig
    from tasks.models import resolve_model
    from tasks.store import Store

    config = _config(TrainConfig, config_file, {
        **_db_overrides(db), "kind": kind, "target": target, "after_first_error": after_first_error,
        "inferred_labels": inferred_labels, "prover": prover, "alpha": alpha, "beta": beta, "loss": loss,
        "class_balance": class_balance,
        "base_model": base_model, "datasets": list(dataset) if dataset else None, "problem_limit": problem_limit,
        "epochs": epochs,
        "batch_size": batch_size, "micro_batch_size": micro_batch_size, "precision": precision,
        "gradient_checkpointing": gradient_checkpointing, "lora": {"r": lora_r} if lora_r else None,
        "lr": lr, "val_fraction": val_fraction, "labels": labels,
        "models_dir": str(models_dir) if models_dir else None,
    }, show=show_config)
    try:
        resolve_model(config.base_model)
        Store(config.db, read_only=True).close()
        from flows.train import train as train_flow

        result = _with_progress(train_flow, config=config)
    except _user_errors() as exc:
        _fail(str(exc))
    if as_json:
        sys.stdout.write(json.dumps(result, default=_json_default, indent=1) + "\n")
        return
    m = result["val_metrics"]
    _print_rows(["model", "train / val solutions", "eval problems excluded", "val loss (base -> trained)",
                 "val step accuracy (base -> trained)" if config.kind != "implicit"
                 else f"val {'solution' if config.loss == 'ce' else 'pair'} accuracy (base -> trained)"],
                [(result["model_id"], f"{result['train_examples']} / {result['val_examples']}",
                  result["excluded_problems"], f"{m['base_val_loss']:.3f} -> {m['val_loss']:.3f}",
                  f"{m['base_val_accuracy']:.3f} -> {m['val_accuracy']:.3f}")], "train")
    console.print(f"checkpoint: {result['path']}")


EVAL_SPLITS = {"arith": "test", "gsm8k": "test", "math500": "test"}


def _eval_overrides(prefix: str, dataset: list[str] | None, limit: int | None, validation_limit: int | None,
                    ) -> Callable[[dict[str, Any]], None]:
    """--dataset / --limit / --validation-limit: they change the lists of test and validation pools."""
    def adjust(data: dict[str, Any]) -> None:
        node = data[prefix] if prefix else data
        if dataset:
            for name in dataset:
                if name not in EVAL_SPLITS:
                    _fail(f"--dataset {name!r}: evaluation datasets are {', '.join(EVAL_SPLITS)} (or use --pool FILE)")
            node["datasets"] = [{"name": name, "split": EVAL_SPLITS[name],
                                 "limit": limit or node["datasets"][0]["limit"]} for name in dataset]
        elif limit:
            for settings in node["datasets"]:
                settings["limit"] = limit
        if validation_limit:
            for settings in node["validation"]:
                settings["limit"] = validation_limit
    return adjust


def _print_evaluations(evaluations, aggregation: str = "last") -> None:
    from tasks.best_of_n import compute_table, diagnostics_table, results_table

    for e in evaluations:
        columns, rows = results_table(e)
        _print_rows(columns, [tuple(r) for r in rows],
                    f"best-of-N on {e.dataset}/{e.split}: {e.problems} problems; accuracy [95% CI]; "
                    f"PRM {e.prm or '-'}, ORM {e.orm or '-'}")
        if e.diagnostics:
            columns, rows = diagnostics_table(e)
            _print_rows(columns, [tuple(r) for r in rows],
                        f"scorer diagnostics on {e.dataset}/{e.split}: AUC vs correctness (0.5 = chance), "
                        "rank correlation with length")
        if any(r.method.startswith("beam") for r in e.results):
            columns, rows = compute_table(e, aggregation)
            _print_rows(columns, [tuple(r) for r in rows],
                        f"compute-matched on {e.dataset}/{e.split}: accuracy vs generated tokens per problem "
                        f"(PRM methods: {aggregation})")
        for line in e.line_errors:
            err.print(f"[yellow]skipped[/] {line}", soft_wrap=True)


def _evaluation_json(evaluations) -> list[dict[str, Any]]:
    from dataclasses import asdict

    return [asdict(e) for e in evaluations]


@app.command("eval")
def eval_command(
    dataset: Annotated[Optional[list[str]], typer.Option("--dataset", help="arith | gsm8k | math500, test splits (repeatable; default arith)")] = None,
    limit: Annotated[Optional[int], typer.Option(help="problems per dataset (default 40)")] = None,
    n_max: Annotated[Optional[int], typer.Option(help="candidates per problem; N = 1, 2, 4, ... n_max (default 8)")] = None,
    prm: Annotated[Optional[str], typer.Option(help="PRM model id, or an implicit PRM's (implicit-...) (default: the promoted PRM, else newest)")] = None,
    orm: Annotated[Optional[str], typer.Option(help="ORM model id (default: promoted, else newest)")] = None,
    implicit_readout: Annotated[Optional[str], typer.Option(help="an implicit --prm's step scores: step (r_t) | cumulative (q_t, default) | sigmoid (sigmoid(q_t); needed by beam --reward pav)")] = None,
    pool: Annotated[Optional[Path], typer.Option(help="evaluate an external JSONL pool (question, answer, responses[, scores, correct])")] = None,
    plot: Annotated[Optional[Path], typer.Option(help="write an accuracy-vs-N PNG")] = None,
    generator: Annotated[Optional[str], typer.Option(help="pool generator model (default: embedded)")] = None,
    temperature: Annotated[Optional[float], typer.Option(help="pool sampling temperature (default 0.8)")] = None,
    max_tokens: Annotated[Optional[int], typer.Option(help="max tokens per candidate (default 256)")] = None,
    validation_limit: Annotated[Optional[int], typer.Option(help="problems per validation pool (default 40)")] = None,
    method: Annotated[Optional[list[str]], typer.Option("--method", help="best_of_n (always run) | beam: also verifier-guided beam search on the test pools, compared with best-of-N at equal generated tokens (repeatable)")] = None,
    beam_width: Annotated[Optional[list[int]], typer.Option("--beam-width", help="beam: width B (repeatable; default 1, 2, 4)")] = None,
    expansions: Annotated[Optional[int], typer.Option(help="beam: next steps C sampled per beam per round (default 3)")] = None,
    reward: Annotated[Optional[str], typer.Option(help="beam: rank steps by q (the PRM's score) or pav (Q + alpha * A under Best-of-K; default)")] = None,
    alpha: Annotated[Optional[float], typer.Option(help="beam: weight of the advantage under pav (default 0.5)")] = None,
    step_format: StepFormatOption = None,
    config_file: ConfigOption = None,
    show_config: ShowConfigOption = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the results as JSON")] = False,
    db: DbOption = None,
) -> None:
    """Best-of-N evaluation (the evaluate flow; config: EvalConfig): pass@1, majority, ORM, PRM (min/last/prod/mean),
    PRM-weighted vote, on the test and validation pools, with scorer diagnostics. With --method beam also
    verifier-guided beam search with the PRM, printed against best-of-N at equal generated tokens."""
    from flows.evaluate import evaluate
    from tasks.config import EvalConfig

    config = _config(EvalConfig, config_file, {
        **_db_overrides(db), "n_max": n_max, "prm": prm, "orm": orm, "implicit_readout": implicit_readout,
        "plot": str(plot) if plot else None,
        "generator.model": generator, "sampling.temperature": temperature, "sampling.max_tokens": max_tokens,
        "step_format": step_format, "methods": method, "beam.widths": beam_width, "beam.expansions": expansions,
        "beam.reward": reward, "beam.alpha": alpha,
    }, _eval_overrides("", dataset, limit, validation_limit), show_config)
    if pool is not None and not pool.is_file():
        _fail(f"{pool}: pool file not found")
    if pool is not None and "beam" in config.methods:
        _fail("--method beam searches the test datasets' problems with the generator; it cannot run on a --pool file")
    try:
        from tasks.models import resolve_model
        from tasks.store import Store

        resolve_model(config.generator.model)
        Store(config.db).close()
        result = _with_progress(evaluate, config=config, pool_file=pool)
    except (*_user_errors(), ValueError) as exc:
        _fail(str(exc))
    finally:
        from tasks.completers import close_completers

        close_completers()
    if as_json:
        sys.stdout.write(json.dumps({"run_id": result["run_id"], "evaluations": _evaluation_json(result["evaluations"])},
                                    default=_json_default, indent=1) + "\n")
        return
    _print_evaluations(result["evaluations"], config.beam.select)
    if config.plot:
        console.print(f"plot: {config.plot}")
        if "beam" in config.methods and pool is None:
            from tasks.best_of_n import compute_plot_path

            console.print(f"accuracy vs tokens: {compute_plot_path(config.plot)}")


@app.command()
def processbench(
    split: Annotated[Optional[str], typer.Option(help="gsm8k | math (default gsm8k)")] = None,
    model: Annotated[Optional[str], typer.Option(help="PRM model id, or an implicit PRM's (read out as sigmoid) (default: the promoted PRM, else newest)")] = None,
    limit: Annotated[Optional[int], typer.Option(help="samples per split (default: all)")] = None,
    threshold: Annotated[Optional[float], typer.Option(help="step-score threshold (default: chosen for F1 on the gsm8k split)")] = None,
    config_file: ConfigOption = None,
    show_config: ShowConfigOption = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
    db: DbOption = None,
) -> None:
    """ProcessBench (config: ProcessBenchConfig): predict each sample's earliest wrong step; accuracy on
    erroneous/correct samples and F1."""
    from flows.processbench import processbench as processbench_flow
    from tasks.config import ProcessBenchConfig

    config = _config(ProcessBenchConfig, config_file, {**_db_overrides(db), "split": split, "model": model,
                                                       "limit": limit, "threshold": threshold}, show=show_config)
    try:
        result = _with_progress(processbench_flow, config=config)
    except (*_user_errors(), ValueError) as exc:
        _fail(str(exc))
    if as_json:
        sys.stdout.write(json.dumps(result, default=_json_default, indent=1) + "\n")
        return
    _print_rows(["model", "split", "samples", "threshold (chosen on)", "error acc", "correct acc", "F1"],
                [(result["model_id"], result["split"], result["samples"],
                  f"{result['threshold']:.3f} ({result['threshold_source']})", result["error_accuracy"],
                  result["correct_accuracy"], result["f1"])], "ProcessBench")


@app.command()
def score(
    model: Annotated[Optional[str], typer.Option("--model", "--prm", help="reward model id: a PRM, or an implicit PRM's (default: the promoted PRM, else newest)")] = None,
    readout: Annotated[str, typer.Option(help="an implicit PRM's step scores: step (r_t) | cumulative (q_t, default) | sigmoid (sigmoid(q_t))")] = "cumulative",
    question: Annotated[Optional[str], typer.Option(help="the problem")] = None,
    solution: Annotated[Optional[list[str]], typer.Option("--solution", help="a solution, one step per line (repeatable)")] = None,
    input_file: Annotated[Optional[Path], typer.Option("--file", help="JSONL: {question, solution (text) | steps (list)} per line")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="most solutions per forward pass (default 64)")] = None,
    batch_tokens: Annotated[Optional[int], typer.Option(help="padded tokens per forward pass (default 16384)")] = None,
    step_format: StepFormatOption = None,
    config_file: ConfigOption = None,
    show_config: ShowConfigOption = False,
    db: DbOption = None,
) -> None:
    """Score solutions step by step with a trained reward model (config: ScoreConfig); one JSON line per solution.

    A solution longer than the model's context is scored on its final steps: the earlier steps'
    scores are null and "truncated" is true. An implicit PRM prints its --readout (its line says which).
    """
    from tasks.config import ScoreConfig
    from tasks.pools import candidate_steps
    from tasks.registry import get_model
    from tasks.store import Store
    from tasks.verifiers import ScoringSettings, load_verifier
    from tasks.verifiers.implicit import READOUTS, with_readout

    if readout not in READOUTS:
        _fail(f"--readout {readout!r}: expected one of {', '.join(READOUTS)}")
    config = _config(ScoreConfig, config_file, {**_db_overrides(db), "model": model, "batch_size": batch_size,
                                                "batch_tokens": batch_tokens, "step_format": step_format}, show=show_config)
    items: list[tuple[str, list[str]]] = []
    if input_file is not None:
        try:
            lines = input_file.read_text().splitlines()
        except OSError as exc:
            _fail(f"cannot read {input_file}: {exc}")
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                steps = (record["steps"] if "steps" in record
                         else candidate_steps(record["solution"], config.step_format))
                if not isinstance(record["question"], str) or not all(isinstance(s, str) for s in steps) or not steps:
                    raise ValueError("question must be a string and steps a non-empty list of strings")
                items.append((record["question"], list(steps)))
            except (ValueError, KeyError, TypeError) as exc:
                err.print(f"[yellow]skipped[/] {input_file}:{number}: {exc!r}", soft_wrap=True)
    elif question and solution:
        items = [(question, candidate_steps(text.replace("\\n", "\n"), config.step_format)) for text in solution]
    else:
        _fail("give --question and --solution, or --file")
    if not items:
        _fail(f"{input_file}: no valid line to score")
    try:
        with Store(config.db, read_only=True) as store:
            row = get_model(store, config.model, "prm")
        verifier = with_readout(load_verifier(row["path"], ScoringSettings(batch_size=config.batch_size,
                                                                            batch_tokens=config.batch_tokens)), readout)
        scores = verifier.score_many(items)
    except _user_errors() as exc:
        _fail(str(exc))
    for (q, steps), scored in zip(items, scores):
        values = [None if x is None else round(x, 6) for x in scored.step_scores]
        known = [x for x in values if x is not None]
        shown = {"readout": readout} if row["kind"] == "implicit" else {}
        sys.stdout.write(json.dumps({"model_id": row["model_id"], **shown, "question": q, "steps": steps,
                                     "step_scores": values, "min": min(known) if known else None, "last": values[-1],
                                     "truncated": scored.truncated}) + "\n")


@app.command()
def factory(
    dataset: Annotated[Optional[str], typer.Option(help="dataset to label this iteration (default arith)")] = None,
    limit: Annotated[Optional[int], typer.Option(help="problems to label (default 50)")] = None,
    select: Annotated[Optional[str], typer.Option(help="next (default): the next --limit problems not labelled yet | first: a fixed slice")] = None,
    solutions: Annotated[Optional[int], typer.Option("--solutions", "-m", help="M solutions per problem")] = None,
    rollouts: Annotated[Optional[int], typer.Option("--rollouts", "-n", help="N rollouts per step prefix")] = None,
    strategy: StrategyOption = None,
    threshold: Annotated[Optional[int], typer.Option(help="retrain when this many new labelled steps arrived (default $PRMF_RETRAIN_THRESHOLD_STEPS or 500)")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="training epochs")] = None,
    implicit: ImplicitVerifierOption = None,
    eval_limit: EvalLimitOption = None,
    validation_limit: ValidationLimitOption = None,
    n_max: NMaxOption = None,
    confidence: ConfidenceOption = None,
    config_file: ConfigOption = None,
    show_config: ShowConfigOption = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the iteration's result as JSON")] = False,
    db: DbOption = None,
) -> None:
    """One factory iteration (the factory flow; config: FactoryConfig): label the next problems -> growth check
    -> retrain, evaluate, promote on validation when due."""
    from flows.factory import factory as factory_flow

    config = _factory_config(config_file, db, {
        "label.retrain_threshold_steps": threshold, "label.dataset.name": dataset, "label.dataset.limit": limit,
        "label.dataset.select": select, "label.solutions": solutions, "label.rollouts": rollouts,
        "label.strategy": strategy, "train.epochs": epochs, "eval.n_max": n_max, "promotion_confidence": confidence,
        "train_implicit": implicit,
    }, eval_limit, validation_limit, show_config)
    result = _run_factory_flow(factory_flow, config)
    if as_json:
        sys.stdout.write(json.dumps(result, default=_json_default, indent=1) + "\n")
        return
    _print_summary(result["label"])
    if result.get("retrain"):
        _print_retrain(result["retrain"])


def _factory_config(config_file: Path | None, db: Path | None, overrides: dict[str, Any], eval_limit: int | None,
                    validation_limit: int | None, show: bool):
    from tasks.config import FactoryConfig

    return _config(FactoryConfig, config_file, {**_db_overrides(db, "label", "train", "eval"), **overrides},
                   _eval_overrides("eval", None, eval_limit, validation_limit), show)


def _run_factory_flow(flow_fn, config) -> dict[str, Any]:
    """Run the factory or retrain flow: models checked first, user errors as one line, engines closed after."""
    from tasks.completers import close_completers

    try:
        _check_models(config.label)
        return _with_progress(flow_fn, config=config)
    except (*_user_errors(), ValueError) as exc:
        _fail(str(exc))
    finally:
        close_completers()


@app.command()
def retrain(
    target: Annotated[Optional[str], typer.Option(help="PRM target: he | se (default he)")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="training epochs")] = None,
    implicit: ImplicitVerifierOption = None,
    eval_limit: EvalLimitOption = None,
    validation_limit: ValidationLimitOption = None,
    n_max: NMaxOption = None,
    confidence: ConfidenceOption = None,
    config_file: ConfigOption = None,
    show_config: ShowConfigOption = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
    db: DbOption = None,
) -> None:
    """Train a PRM and an ORM (and with --implicit an implicit PRM), evaluate them, promote those that beat the
    promoted ones on validation (the retrain flow; config: FactoryConfig, the same a growth-triggered retrain
    receives)."""
    from flows.retrain import retrain as retrain_flow

    config = _factory_config(config_file, db, {
        "train.target": target, "train.epochs": epochs, "eval.n_max": n_max, "promotion_confidence": confidence,
        "train_implicit": implicit,
    }, eval_limit, validation_limit, show_config)
    result = _run_factory_flow(retrain_flow, config)
    if as_json:
        sys.stdout.write(json.dumps(result, default=_json_default, indent=1) + "\n")
        return
    _print_retrain(result)


@app.command()
def study(
    size: Annotated[Optional[list[int]], typer.Option("--size", help="data-scaling slice: the first N problems of the label dataset (repeatable, ascending; default 20, 80)")] = None,
    verifier: Annotated[Optional[list[str]], typer.Option("--verifier", help="trained on the largest slice (repeatable): orm | prm-he | prm-se | pav | implicit | oracle (default all)")] = None,
    scaling_verifier: Annotated[Optional[list[str]], typer.Option("--scaling-verifier", help="also trained on every smaller slice (repeatable; default orm, prm-he)")] = None,
    strategy: Annotated[Optional[str], typer.Option(help="labelling strategy of the slices (default naive+root: every prefix measured, as SE and PAV need)")] = None,
    solutions: Annotated[Optional[int], typer.Option(help="solutions per labelled problem (default 4)")] = None,
    rollouts: Annotated[Optional[int], typer.Option(help="rollouts per step prefix (default 8)")] = None,
    base_model: Annotated[Optional[str], typer.Option(help="base model of every verifier (default: the embedded SmolLM2)")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="training epochs of every verifier (default 1)")] = None,
    eval_limit: EvalLimitOption = None,
    validation_limit: Annotated[Optional[int], typer.Option(help="problems per validation pool (default 20)")] = None,
    n_max: Annotated[Optional[int], typer.Option(help="candidates per evaluation problem (default 16)")] = None,
    selection_n: Annotated[Optional[int], typer.Option(help="the N of the headline and of the aggregation choice (default 8)")] = None,
    processbench_limit: Annotated[Optional[int], typer.Option(help="ProcessBench samples per split for the largest slice's step verifiers (default 20; 0 skips)")] = None,
    beam_verifier: Annotated[Optional[str], typer.Option(help="the step verifier that guides beam search on the test pool: best (highest best-of-N on validation; default) | none | prm-he | prm-se | pav | implicit | oracle")] = None,
    beam_width: Annotated[Optional[list[int]], typer.Option("--beam-width", help="beam widths B of that search (repeatable; default eval.beam.widths: 1, 2, 4)")] = None,
    pool: Annotated[Optional[list[Path]], typer.Option("--pool", help="an external candidate pool (JSONL, as prmf eval --pool) the largest slice's verifiers are also evaluated on (repeatable)")] = None,
    report_dir: Annotated[Optional[Path], typer.Option(help="report folder (default: study-<id>/ next to the store)")] = None,
    config_file: ConfigOption = None,
    show_config: ShowConfigOption = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
    db: DbOption = None,
) -> None:
    """Does better process supervision make a better verifier? (the study flow; config: StudyConfig)

    Stages, each reused from the store when it already ran (a killed study reruns from where it stopped):

    1. label: the first N problems of the label dataset for each --size (nested slices).

    2. train: every --scaling-verifier on every slice and every --verifier on the largest: ORM, PRM on HE and SE targets, PAV, implicit PRM, and the oracle PRM on arith's gold step labels (the ceiling).

    3. select: each verifier on one fixed test pool (N up to --n-max, the same candidates for all): pass@1, majority, best-of-N and weighted vote with the aggregation chosen on the validation pool, 95% intervals, scorer diagnostics, step scores against arith gold labels.

    4. search: beam search on the test pool's problems at each --beam-width, guided by --beam-verifier (default: the step verifier with the best validation best-of-N), next to best-of-N and majority at no more generated tokens.

    5. external: ProcessBench F1 (math split, threshold chosen on gsm8k) of the largest slice's step verifiers, and each --pool file's best-of-N.

    6. report: report.md (tables, accuracy-vs-N and accuracy-vs-cost PNGs) and report.json next to the store, also a Prefect artifact. It says whether a factory verifier beat majority by 10 points at N = --selection-n with non-overlapping intervals, and if not, how far the best one and the oracle ceiling were.

    The defaults took 41 min from an empty store on 2 CPU cores (2026-11-27; README, "Measured"). On a GPU raise the sizes, train.epochs and the base model in a --config file.
    """
    from flows.study import study as study_flow
    from tasks.config import StudyConfig

    def adjust(data: dict[str, Any]) -> None:
        if size:
            data["sizes"] = list(size)
        if verifier:
            data["verifiers"] = list(verifier)
            if not scaling_verifier:
                data["scaling_verifiers"] = [v for v in data["scaling_verifiers"] if v in verifier]
        if scaling_verifier:
            data["scaling_verifiers"] = list(scaling_verifier)
        if eval_limit:
            for settings in data["eval"]["datasets"]:
                settings["limit"] = eval_limit
        if validation_limit:
            for settings in data["eval"]["validation"]:
                settings["limit"] = validation_limit
        if pool:
            for path in pool:
                if not path.is_file():
                    _fail(f"--pool {path}: no such file")
            data["pools"] = [str(path) for path in pool]
        if beam_width:
            data["eval"].setdefault("beam", {})["widths"] = list(beam_width)

    config = _config(StudyConfig, config_file, {
        **_db_overrides(db, "label", "train", "eval"), "label.strategy": strategy, "label.solutions": solutions,
        "label.rollouts": rollouts, "train.base_model": base_model, "train.epochs": epochs, "eval.n_max": n_max,
        "selection_n": selection_n, "processbench_limit": processbench_limit, "beam_verifier": beam_verifier,
        "report_dir": str(report_dir) if report_dir else None,
    }, adjust, show=show_config)
    command = "prmf " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    result = _run_factory_flow(lambda config: study_flow(config=config, command=command), config)
    if as_json:
        sys.stdout.write(json.dumps({k: v for k, v in result.items() if k != "trained"}, default=_json_default,
                                    indent=1) + "\n")
        return
    for dataset, bar in result["report"]["bars"].items():
        console.print(f"{dataset}: the bar is {'met' if bar['met'] else 'not met'}", soft_wrap=True)
        console.print(bar["text"], soft_wrap=True)
    console.print(f"report: {result['report']['path']}")


@app.command()
def export(
    out: Annotated[Optional[Path], typer.Argument(help="output folder, new or empty (default prmf-export)")] = None,
    format: Annotated[Optional[str], typer.Option("--format", help="trl (default) | math-shepherd | openrlhf | pairs | processbench")] = None,
    output: Annotated[Optional[list[str]], typer.Option("--output", help="parquet | jsonl | hf (repeatable; default parquet and hf)")] = None,
    dataset: Annotated[Optional[list[str]], typer.Option("--dataset", help="only this dataset (repeatable; default all)")] = None,
    split: Annotated[Optional[list[str]], typer.Option("--split", help="only this split (repeatable; default every split but test)")] = None,
    strategy: Annotated[Optional[str], typer.Option(help="only solutions labelled by this strategy (e.g. naive, binary_search+early_stop)")] = None,
    completer: Annotated[Optional[str], typer.Option(help="only this completer model's estimates (default: any, pooled)")] = None,
    label: Annotated[Optional[str], typer.Option(help="label kind: he (default; soft SE) | se (SE >= --se-threshold) | pav (advantage >= 0) | gold (arith)")] = None,
    se_threshold: Annotated[Optional[float], typer.Option(help="--label se: the SE at and above which a step is correct (default 0.5)")] = None,
    measured_only: Annotated[bool, typer.Option("--measured-only", help="drop solutions with an inferred step label")] = False,
    min_rollouts: Annotated[Optional[int], typer.Option(help="drop solutions with a measured step from fewer rollouts")] = None,
    after_first_error: Annotated[Optional[str], typer.Option(help="keep (default) | drop: end each solution at its first wrong step")] = None,
    include_eval: Annotated[bool, typer.Option("--include-eval", help="also export questions of evaluation pools")] = False,
    placeholder: Annotated[Optional[str], typer.Option(help="openrlhf: the step placeholder (default ки; one token of the trainer's tokenizer)")] = None,
    openrlhf_soft: Annotated[bool, typer.Option("--openrlhf-soft", help="openrlhf: float labels (the soft values) instead of +/-")] = False,
    tokenizer: Annotated[Optional[str], typer.Option(help="openrlhf: check every row against this tokenizer (local folder or the embedded alias)")] = None,
    shard_rows: Annotated[Optional[int], typer.Option(help="rows per shard (default 100000)")] = None,
    problems_per_query: Annotated[Optional[int], typer.Option(help="problems DuckDB reads per query: bounds its memory (default 2000)")] = None,
    push_to_hub: Annotated[Optional[str], typer.Option(help="also push to this hub dataset repo (user/name; needs hub access)")] = None,
    config_file: ConfigOption = None,
    show_config: ShowConfigOption = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
    db: DbOption = None,
) -> None:
    """Export the step labels as a dataset PRM trainers read (config: ExportConfig), streamed into
    Parquet/JSONL shards and a `datasets` dataset, with a card (README.md) stating provenance:
    models, sampling, strategies, counts, label rates, run ids, code version and this command."""
    from flows.export import export as export_flow
    from tasks.config import ExportConfig
    from tasks.interchange.export import ExportError

    def adjust(data: dict[str, Any]) -> None:
        for key, values in (("outputs", output), ("datasets", dataset), ("splits", split)):
            if values:
                data[key] = list(values)
        for key, flag in (("measured_only", measured_only), ("include_eval", include_eval),
                          ("openrlhf_soft", openrlhf_soft)):
            if flag:
                data[key] = True

    config = _config(ExportConfig, config_file, {
        **_db_overrides(db), "out": str(out) if out else None, "format": format, "strategy": strategy,
        "completer": completer, "label": label, "se_threshold": se_threshold, "min_rollouts": min_rollouts,
        "after_first_error": after_first_error, "placeholder": placeholder, "tokenizer": tokenizer,
        "shard_rows": shard_rows, "problems_per_query": problems_per_query, "push_to_hub": push_to_hub}, adjust,
        show=show_config)
    command = "prmf " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    try:
        result = _with_progress(export_flow, config=config, command=command)
    except (*_user_errors(), ExportError) as exc:
        _fail(str(exc))
    if as_json:
        sys.stdout.write(json.dumps(result, default=_json_default, indent=1) + "\n")
        return
    _print_rows(["split", "rows"], sorted(result["splits"].items()), f"export {result['format']} -> {result['out']}")
    console.print(f"{result['solutions']} solutions, {result['steps']} steps ({result['positive_steps']} labelled "
                  f"correct); files under {result['out']}/data" + (", hf/" if result["hf_path"] else "")
                  + "; card: README.md", soft_wrap=True)


@app.command("import")
def import_command(
    path: Annotated[Optional[str], typer.Argument(help="the file (JSONL, JSON, Parquet) or `datasets` save_to_disk folder")] = None,
    fmt: Annotated[Optional[str], typer.Option("--format", help="math-shepherd | trl | openrlhf | prm800k | processbench | math-aps | math-aps-tree (default math-shepherd)")] = None,
    dataset: Annotated[Optional[str], typer.Option(help="problems.dataset (default: the format's name; processbench: processbench-<file stem>)")] = None,
    split: Annotated[Optional[str], typer.Option(help="problems.split (default train)")] = None,
    placeholder: Annotated[Optional[str], typer.Option(help="openrlhf: the step placeholder (default ки)")] = None,
    limit: Annotated[Optional[int], typer.Option(help="import at most this many records (default: all)")] = None,
    config_file: ConfigOption = None,
    show_config: ShowConfigOption = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
    db: DbOption = None,
) -> None:
    """Import a public step-labelled dataset (the import flow; config: ImportConfig): problems, solutions,
    steps and their imported step labels; bad records are quarantined with file, line and reason."""
    from tasks.config import ImportConfig
    from tasks.store import Store

    config = _config(ImportConfig, config_file, {
        **_db_overrides(db), "path": path, "format": fmt, "dataset": dataset, "split": split,
        "placeholder": placeholder, "limit": limit,
    }, show=show_config)
    if not config.path:
        _fail("no file to import: give its path (prmf import PATH) or `path` in --config")
    try:
        Store(config.db).close()
        from flows.import_labels import import_labels

        result = _with_progress(import_labels, config=config)
    except _user_errors() as exc:
        _fail(str(exc))
    if as_json:
        sys.stdout.write(json.dumps(result, default=_json_default, indent=1) + "\n")
        return
    if result["already_imported"]:
        console.print(f"{result['source']}: already imported ({result['import_id']}) into "
                      f"{result['dataset']} / {result['split']}; nothing stored", soft_wrap=True)
        return
    _print_rows(["format", "dataset / split", "read", "imported", "quarantined", "duplicates", "problems", "steps",
                 "step labels"],
                [(result["format"], f"{result['dataset']} / {result['split']}", result["read"], result["imported"],
                  result["quarantined"], result["duplicates"], result["problems"], result["steps"], result["labels"])],
                f"import {result['import_id']}")
    for reason in result["reasons"]:
        console.print(f"quarantined: {result['source']} {reason}", soft_wrap=True)


def _print_retrain(retrained: dict[str, Any]) -> None:
    _print_evaluations(retrained["evaluation"]["evaluations"])
    if retrained.get("implicit_evaluation"):
        _print_evaluations(retrained["implicit_evaluation"]["evaluations"])
    _print_rows(["kind", "new model", "vs", "N", "validation problems", "new acc", "baseline acc", "gain",
                 "one-sided bound", "promoted?"],
                [(d.kind, d.candidate, d.baseline, d.n, d.problems, d.candidate_accuracy, d.baseline_accuracy,
                  f"{d.difference:+.3f}", f"{d.ci_low:+.3f} ({d.confidence:.0%})", "yes" if d.promoted else "no")
                 for d in retrained["decisions"]], "promotion (decided on validation, paired bootstrap over problems)")
    for d in retrained["decisions"]:
        console.print(f"{d.kind.upper()} {d.candidate}: {d.reason}", soft_wrap=True)


@app.command()
def ingest(
    dataset: Annotated[Optional[str], typer.Option(help="arith | gsm8k | math500 | math | jsonl | hf (default arith)")] = None,
    split: Annotated[Optional[str], typer.Option(help="split (default per dataset)")] = None,
    limit: Annotated[Optional[int], typer.Option(help="max problems (default: all)")] = None,
    path: Annotated[Optional[str], typer.Option(help="jsonl/hf source")] = None,
    dataset_name: Annotated[Optional[str], typer.Option(help="jsonl/hf: name stored in problems.dataset")] = None,
    question_field: Annotated[Optional[str], typer.Option(help="jsonl/hf: question field")] = None,
    answer_field: Annotated[Optional[str], typer.Option(help="jsonl/hf: gold answer field")] = None,
    answer_kind: Annotated[Optional[str], typer.Option(help="jsonl/hf: numeric | math")] = None,
    gold_format: Annotated[Optional[str], typer.Option(help="jsonl/hf: plain | gsm8k")] = None,
    arith_seed: Annotated[Optional[int], typer.Option(help="arith: seed")] = None,
    config_file: ConfigOption = None,
    show_config: ShowConfigOption = False,
    db: DbOption = None,
) -> None:
    """Load problems into the store (config: IngestConfig); invalid rows and unreadable gold answers are
    quarantined with file, line and reason."""
    from tasks.config import IngestConfig
    from tasks.ingest import ingest_problems
    from tasks.store import Store, internal_sql

    config = _config(IngestConfig, config_file, {
        **_db_overrides(db), "dataset.name": dataset, "dataset.split": split, "dataset.limit": limit,
        "dataset.path": path, "dataset.dataset_name": dataset_name, "dataset.question_field": question_field,
        "dataset.answer_field": answer_field, "dataset.answer_kind": answer_kind, "dataset.gold_format": gold_format,
        "dataset.arith_seed": arith_seed,
    }, show=show_config)
    try:
        with Store(config.db) as store:
            summary = ingest_problems(store, config.dataset)
            quarantined = store.query(internal_sql("latest_quarantine"))
    except _user_errors() as exc:
        _fail(str(exc))
    _print_rows(["dataset", "split", "valid rows", "new problems", "quarantined"],
                [(summary.dataset, summary.split, summary.loaded, summary.new, summary.quarantined)], "ingest")
    if summary.quarantined:
        _print_rows(quarantined.columns, quarantined.rows, "quarantine (latest 10)")


@app.command()
def query(
    sql_or_name: Annotated[str, typer.Argument(help="a saved query name (see --list) or any SQL")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="print rows as a JSON array of objects")] = False,
    list_queries: Annotated[bool, typer.Option("--list", help="list saved queries")] = False,
    db: DbOption = None,
) -> None:
    """Run a saved query (sql/queries/NAME.sql) or any SQL against the store."""
    from tasks.config import default_db_path
    from tasks.store import Store, saved_queries

    if list_queries or not sql_or_name:
        for name, path in saved_queries().items():
            first = path.read_text().splitlines()[0].lstrip("- ").strip()
            console.print(f"[bold]{name}[/]  {first}")
        return
    try:
        with Store(db or default_db_path(), read_only=True) as store:
            result = store.saved_query(sql_or_name) if sql_or_name in saved_queries() else store.query(sql_or_name)
    except _user_errors() as exc:
        _fail(str(exc))
    if as_json:
        sys.stdout.write(json.dumps(result.as_dicts(), default=_json_default, indent=1) + "\n")
    else:
        _print_rows(result.columns, result.rows)


@app.command()
def advantages(
    alpha: Annotated[float, typer.Option(help="weight of the advantage in the effective reward Q_pi + alpha A_mu")] = 0.5,
    n_boot: Annotated[int, typer.Option(help="bootstrap resamples of problems")] = 1000,
    as_json: Annotated[bool, typer.Option("--json", help="print the rows as JSON")] = False,
    db: DbOption = None,
) -> None:
    """Process advantages (PAV) against gold step labels (arith): AUC of Q_pi, A_mu and the effective reward per
    base evaluation and prover (Best-of-2/4/8 and every separate prover), 95% intervals over problems, and whether
    the advantage adds to Q_pi (paired AUC difference)."""
    from dataclasses import asdict

    from tasks.config import default_db_path
    from tasks.labelling.gold_check import gold_check, gold_check_table
    from tasks.store import Store

    if alpha < 0 or n_boot < 1:
        _fail("--alpha must be >= 0 and --n-boot >= 1")
    try:
        with Store(db or default_db_path()) as store:  # writable: an older store gets the step_advantages macro
            checks = gold_check(store, alpha, n_boot)
    except _user_errors() as exc:
        _fail(str(exc))
    if as_json:
        sys.stdout.write(json.dumps([asdict(c) for c in checks], indent=1) + "\n")
        return
    if not checks:
        _fail("no steps with a gold label and an advantage: label a dataset with gold step labels (arith) with "
              "--strategy naive+root (and a prover's own run for a separate prover)")
    columns, rows = gold_check_table(checks)
    _print_rows(columns, [tuple(r) for r in rows],
                f"process advantages vs gold step labels, alpha {alpha}: AUC [95% CI, bootstrap over problems]")


@app.command("gold-steps")
def gold_steps(
    model: Annotated[Optional[list[str]], typer.Option(
        "--model", help="a PRM or implicit PRM id (repeatable; the first is the baseline of the differences; "
        "default: every step-scoring model with scores on the pool, oldest first)")] = None,
    split: Annotated[str, typer.Option(help="the arith evaluation pool: test | validation")] = "test",
    readout: Annotated[Optional[list[str]], typer.Option(
        help="an implicit PRM's read-outs (repeatable): step (r_t) | cumulative (q_t); default both")] = None,
    n_boot: Annotated[int, typer.Option(help="bootstrap resamples of problems")] = 1000,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
    db: DbOption = None,
) -> None:
    """Verifier step scores against arith gold step labels on held-out problems: AUC of each PRM's (and each implicit
    PRM read-out's) step scores on the arith evaluation pool's candidates (scored by `prmf eval`), over the same
    steps for every scorer, with 95% intervals over problems and paired differences from the first scorer."""
    from dataclasses import asdict

    from tasks.config import default_db_path
    from tasks.store import Store
    from tasks.verifiers.gold_check import IMPLICIT_READOUTS, gold_step_check, gold_step_table

    readouts = tuple(readout or IMPLICIT_READOUTS)
    if split not in ("test", "validation"):
        _fail(f"--split must be test or validation, not {split!r}")
    if bad := [r for r in readouts if r not in IMPLICIT_READOUTS]:
        _fail(f"--readout must be step or cumulative, not {bad[0]!r}")
    if n_boot < 1:
        _fail("--n-boot must be >= 1")
    try:
        with Store(db or default_db_path()) as store:
            check = gold_step_check(store, tuple(model or ()), split, readouts, n_boot)
    except _user_errors() as exc:
        _fail(str(exc))
    if as_json:
        sys.stdout.write(json.dumps(asdict(check), indent=1) + "\n")
        return
    columns, rows = gold_step_table(check)
    _print_rows(columns, [tuple(r) for r in rows],
                f"step scores vs arith gold step labels, arith {split} pool: {check.problems} problems, "
                f"{check.candidates} candidates, {check.non_final_steps} non-final steps "
                f"({check.non_final_gold_correct} gold-correct), {check.all_steps} steps in all; "
                "AUC [95% CI, bootstrap over problems]")


@app.command()
def backup(
    destination: Annotated[Path, typer.Argument(help="new file for the copy, e.g. backups/prmf-2026-11-21.duckdb")],
    db: DbOption = None,
) -> None:
    """Copy the store consistently while runs may be going (they wait while the file is copied)."""
    from tasks.config import default_db_path
    from tasks.store import Store

    from tasks.lake import is_lake

    source = Path(db or default_db_path())
    if not is_lake(source) and not source.exists():
        _fail(f"database {source} does not exist")
    try:
        with Store(source) as store:
            path = store.backup(destination)
    except _user_errors() as exc:
        _fail(str(exc))
    console.print(f"backup written: {path} ({path.stat().st_size / 2**20:.1f} MiB)")


@app.command()
def settle(
    db: DbOption = None,
    recompute_all: Annotated[bool, typer.Option("--all", help="recompute every settled problem, not only those of "
                                                "runs that ended since the last settle")] = False,
) -> None:
    """Store the estimates of problems no running run writes any more, so that queries read them
    precomputed (label and import runs do it when they end; README, "Settled estimates")."""
    from tasks.config import default_db_path
    from tasks.lake import is_lake
    from tasks.store import Store

    source = Path(db or default_db_path())
    if not is_lake(source) and not source.exists():
        _fail(f"database {source} does not exist")
    try:
        with Store(source) as store:
            settled = store.settle(recompute_all=recompute_all)
    except _user_errors() as exc:
        _fail(str(exc))
    console.print(f"settled {len(settled.runs)} runs: {settled.problems} problems' estimates stored in "
                  f"{settled.seconds:.1f} s; {settled.unsettled} problems are still computed from their units (written by "
                  f"runs still running)")


@app.command("migrate-store")
def migrate_store(
    to: Annotated[str, typer.Option("--to", help="the destination: a new DuckDB file, or a DuckLake location "
                                    "(ducklake:postgres:dbname=NAME host=H user=U, or ducklake:PATH.ducklake) "
                                    "with no rows yet")],
    data_path: Annotated[Optional[Path], typer.Option(
        help="a new lake's data files folder (default: $PRMF_LAKE_DATA_PATH; an existing lake knows its own)")] = None,
    rows_per_batch: Annotated[int, typer.Option(help="rows per streamed batch")] = 100_000,
    db: Annotated[Optional[str], typer.Option("--db", help="the source store: a DuckDB file or a DuckLake location "
                                              "(default: $PRMF_DB or ./prmf.duckdb)")] = None,
) -> None:
    """Copy a whole store into a DuckLake (or a lake back into a DuckDB file), table by table; every
    table's row count is checked on both sides. Work leases are not copied: copy a store no run is writing."""
    from tasks.config import default_db_path
    from tasks.lake import redact
    from tasks.store_copy import copy_store

    if data_path is not None:
        os.environ["PRMF_LAKE_DATA_PATH"] = str(data_path)
    from tasks.progress import RichReporter, set_reporter

    source = str(db or default_db_path())
    with RichReporter() as reporter:
        set_reporter(reporter)
        try:
            copied = copy_store(source, to, rows_per_batch)
        except _user_errors() as exc:
            _fail(str(exc))
        finally:
            set_reporter(None)
    _print_rows(["table", "source rows", "destination rows", "ok"],
                [(c.table, c.source_rows, c.destination_rows, "ok" if c.ok else "MISMATCH") for c in copied])
    bad = [c.table for c in copied if not c.ok]
    if bad:
        _fail(f"row counts differ in {', '.join(bad)}")
    console.print(f"copied {sum(c.source_rows for c in copied)} rows in {len(copied)} tables from {redact(source)} "
                  f"to {redact(to)}")


@app.command()
def doctor(
    db: DbOption = None,
    gpu: Annotated[bool, typer.Option("--gpu", help="run the GPU check instead: train, score and generate with a "
                                      "random-weight model on CUDA (skipped with a reason where CUDA is absent)")] = False,
    gpu_model_config: Annotated[Optional[Path], typer.Option(
        help="--gpu: folder with config.json + tokenizer files of the architecture to build (no weights needed; "
        "default: the embedded model's)")] = None,
) -> None:
    """Check the environment (engine, model cache) and the store's integrity; say how to fix problems."""
    from tasks.config import default_db_path
    from tasks.doctor import check_environment, check_store

    if gpu:
        _gpu_check(gpu_model_config)
        return

    checks = check_environment() + check_store(Path(db or default_db_path()))
    table = Table(title="prmf doctor")
    for column in ("check", "status", "detail"):
        table.add_column(column)
    for c in checks:
        table.add_row(c.name, "[green]ok[/]" if c.ok else "[red]PROBLEM[/]", c.detail)
    console.print(table)
    problems = [c for c in checks if not c.ok]
    for c in problems:
        console.print(f"[bold]{c.name}[/]: {c.fix}", soft_wrap=True)
    if problems:
        raise typer.Exit(1)


def _gpu_check(config_dir: Path | None) -> None:
    from tasks.gpu_check import cuda_skip_reason, run_gpu_check

    reason = cuda_skip_reason()
    if reason is not None:
        console.print(f"GPU check skipped: {reason}")
        return
    if config_dir is None:
        from tasks.models import embedded_model_dir

        config_dir = embedded_model_dir()
    if not (config_dir / "config.json").is_file():
        _fail(f"{config_dir}: no config.json (give --gpu-model-config: a folder with config.json and tokenizer files)")

    def report(check: Any) -> None:
        console.print(f"{'[green]ok[/]' if check.ok else '[red]FAILED[/]'}  {check.name}: {check.detail}", soft_wrap=True)

    checks = run_gpu_check(config_dir, report)
    failed = [c.name for c in checks if not c.ok]
    if failed:
        console.print(f"[red]GPU check failed[/]: {', '.join(failed)}")
        raise typer.Exit(1)
    console.print(f"GPU check passed: {len(checks)} checks")


@model_app.command("prepare")
def model_prepare(force: Annotated[bool, typer.Option(help="convert again even if cached")] = False) -> None:
    """Convert the embedded SmolLM2-135M-Instruct GGUF into a safetensors folder (once)."""
    from tasks.models import ModelError, prepare_embedded_model

    try:
        path = prepare_embedded_model(force=force)
    except ModelError as exc:
        _fail(str(exc))
    console.print(f"embedded model ready: {path}")


bench_app = typer.Typer(help="Benchmarks: figures printed side by side with the baseline.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")


@bench_app.command("engine")
def bench_engine(
    variants: Annotated[str, typer.Option(help="comma-separated variants, baseline first")] = (
        "vllm-defaults,no-reserved-core,eager,prmf-default"
    ),
    problems: Annotated[int, typer.Option(help="step prefixes in the workload")] = 32,
    n: Annotated[int, typer.Option("-n", help="rollouts per prefix")] = 8,
    max_tokens: Annotated[int, typer.Option(help="max tokens per rollout")] = 48,
) -> None:
    """Engine start time and rollout throughput per vLLM engine variant (one process each)."""
    from tasks.bench import compare

    try:
        results = compare([v.strip() for v in variants.split(",") if v.strip()], problems, n, max_tokens)
    except (ValueError, RuntimeError) as exc:
        _fail(str(exc))
    base = results[0]
    console.print(f"workload: {problems} step prefixes x n={n}, max {max_tokens} tokens; baseline {base.variant}")
    _print_rows(
        ["variant", "start s", "gen s", "tokens", "tok/s", "prefix/s", "speed-up"],
        [(r.variant, f"{r.engine_start_s:.1f}", f"{r.generate_s:.1f}", r.tokens, f"{r.tokens_per_s:.1f}",
          f"{r.prefixes_per_s:.2f}", f"{r.tokens_per_s / base.tokens_per_s:.2f}x") for r in results],
        "prmf bench engine",
    )


def _bench_verifiers(kind: str, variants: str, model_config: Path | None, samples: int, batch_size: int) -> None:
    from tasks.bench_verifiers import compare
    from tasks.models import embedded_model_dir

    config_dir = model_config or embedded_model_dir()
    if not (config_dir / "config.json").is_file():
        _fail(f"{config_dir}: no config.json (--model-config: a folder with config.json and tokenizer files)")
    try:
        results = compare(kind, [v.strip() for v in variants.split(",") if v.strip()], config_dir, samples, batch_size)
    except (ValueError, RuntimeError) as exc:
        _fail(str(exc))
    base = results[0]
    console.print(f"workload: {samples} ProcessBench solutions, random-weight model from {config_dir}, on "
                  f"{base.device}" + (f", batch {batch_size}" if kind == "train" else "") + f"; baseline {base.variant}")
    memory = "peak GPU GiB" if base.device == "cuda" else "peak RSS GiB"
    _print_rows(
        ["variant", "seconds", "solutions/s", "tokens/s", "padding", memory, "speed-up"],
        [(r.variant, f"{r.seconds:.2f}", f"{r.solutions_per_s:.1f}", f"{r.tokens_per_s:.0f}",
          f"{1 - r.tokens / r.padded_tokens:.0%}", f"{r.peak_memory_gib:.2f}",
          f"{r.solutions_per_s / base.solutions_per_s:.2f}x") for r in results],
        f"prmf bench {kind}",
    )


@bench_app.command("export")
def bench_export(
    problems: Annotated[int, typer.Option(help="synthetic problems")] = 20_000,
    solutions: Annotated[int, typer.Option(help="solutions per problem")] = 10,
    steps: Annotated[int, typer.Option(help="steps per solution")] = 5,
    rollouts: Annotated[int, typer.Option(help="rollouts per step prefix")] = 2,
    problems_per_query: Annotated[int, typer.Option(help="the chunked variant's problems per query (prmf export's default)")] = 2_000,
    workdir: Annotated[Path, typer.Option(help="where the synthetic store and the exports are written")] = Path("bench-export"),
) -> None:
    """prmf export (chunked: one query per problems_per_query problems) vs one streamed query vs the whole
    result in memory, on a synthetic store: seconds, steps/s, peak RSS."""
    from tasks.bench_export import compare

    report = compare(workdir, problems, solutions, steps, rollouts, problems_per_query)
    base = report["results"][0]
    _print_rows(["variant", "rows", "steps", "seconds", "steps/s", "peak RSS (MB)", "RSS vs in-memory"],
                [(r["variant"], r["rows"], r["steps"], f"{r['seconds']:.1f}", f"{r['steps_per_s']:.0f}",
                  f"{r['peak_rss_mb']:.0f}", f"{r['peak_rss_mb'] / base['peak_rss_mb']:.2f}x")
                 for r in report["results"]],
                f"prmf bench export: {report['store']['solutions']} solutions, {report['store']['steps']} steps, "
                f"{report['store']['rollouts']} rollouts (store built in {report['build_s']:.0f} s)")


@bench_app.command("store")
def bench_store(
    problems: Annotated[int, typer.Option(help="synthetic problems")] = 78_000,
    solutions: Annotated[int, typer.Option(help="solutions per problem")] = 8,
    steps: Annotated[int, typer.Option(help="steps per solution")] = 5,
    rollouts: Annotated[int, typer.Option(help="rollouts per step prefix (defaults: 10M rollouts in all)")] = 4,
    repeats: Annotated[int, typer.Option(help="runs per query; the best is reported")] = 2,
    skip: Annotated[Optional[list[str]], typer.Option("--skip", help="a query not to time (repeatable), e.g. advantages_vs_gold")] = None,
    running_problems: Annotated[int, typer.Option(help="problems a run still labelling writes in the `running` "
                                                  "variant (0: no such variant)", min=0)] = 1_000,
    workdir: Annotated[Path, typer.Option(help="where the synthetic store is written")] = Path("bench-store"),
    as_json: Annotated[bool, typer.Option("--json", help="print the figures as JSON")] = False,
) -> None:
    """Every saved query on a synthetic store: estimates read settled (stored by `prmf settle`), computed
    from the units' stored (n, k), and counting every rollout (as before both): seconds side by side,
    same rows checked."""
    from tasks.bench_store import compare

    try:
        report = compare(workdir, problems, solutions, steps, rollouts, repeats, tuple(skip or ()), running_problems)
    except ValueError as exc:
        _fail(str(exc))
    if as_json:
        sys.stdout.write(json.dumps(report, indent=1) + "\n")
        return
    running = "running_problems" in report
    _print_rows(["query", "by-rollouts (s)", "unit-counts (s)", "settled (s)", "speed-up", "same rows"]
                + ([f"while a run labels {report['running_problems']} problems (s)"] if running else []),
                [(r["query"], f"{r['by-rollouts']:.2f}", f"{r['unit-counts']:.2f}", f"{r['settled']:.2f}",
                  f"{r['speedup']:.1f}x" if r["speedup"] else "", "yes" if r["same_rows"] else "NO")
                 + ((f"{r['running']:.2f}",) if running else ())
                 for r in report["results"]],
                f"prmf bench store: {report['store']['problems']} problems, {report['store']['solutions']} solutions, "
                f"{report['store']['rollouts']} rollouts (store built in {report['build_s']:.0f} s, settled in "
                f"{report['settle_s']:.1f} s; speed-up: by-rollouts / settled"
                + (f"; that run settled in {report['running_settle_s']:.1f} s at its end" if running else "") + ")")
    if not all(r["same_rows"] for r in report["results"]):
        _fail("the estimates disagree between variants on the queries marked NO")


@bench_app.command("scale")
def bench_scale(
    variants: Annotated[str, typer.Option(help="comma-separated variants, baseline first: file-local, file-ray-1, "
                                          "file-ray-2, lake-local, lake-ray-2")] = (
        "file-local,file-ray-1,file-ray-2,lake-local,lake-ray-2"),
    problems: Annotated[int, typer.Option(help="arith problems labelled by each variant")] = 8,
    solutions: Annotated[int, typer.Option("--solutions", "-m", help="M solutions per problem")] = 2,
    rollouts: Annotated[int, typer.Option("--rollouts", "-n", help="N rollouts per prefix")] = 4,
    workdir: Annotated[Path, typer.Option(help="stores, lake data and Prefect homes of the variants")] = Path("bench-scale"),
    as_json: Annotated[bool, typer.Option("--json", help="print the figures as JSON")] = False,
) -> None:
    """One label job per variant (a real `prmf label` process on a fresh store): 1 vs 2 Ray shards, DuckDB file vs
    DuckLake on a PostgreSQL started on 127.0.0.1; wall time, labelled steps/s and tokens/s against the baseline."""
    from tasks import bench_scale as bench

    try:
        report = bench.run([v.strip() for v in variants.split(",") if v.strip()], problems, solutions, rollouts,
                           workdir, progress=lambda line: err.print(line))
    except (ValueError, RuntimeError) as exc:
        _fail(str(exc))
    if as_json:
        sys.stdout.write(json.dumps(report, indent=1) + "\n")
        return
    base = report["results"][0]["variant"]
    _print_rows(["variant", "wall s", "labelled steps", "tokens", "steps/s", "tokens/s", f"wall vs {base}", "same work"],
                [(r["variant"], f"{r['wall_s']:.1f}", r["labelled_steps"], r["tokens"], f"{r['steps_per_s']:.2f}",
                  f"{r['tokens_per_s']:.1f}", f"{r['wall_ratio']:.2f}x", "yes" if r["same_work"] else "NO")
                 for r in report["results"]],
                f"prmf bench scale: {problems} arith problems x {solutions} solutions, N = {rollouts}, "
                f"{report['config']['cpus']} CPUs")
    if not all(r["same_work"] for r in report["results"]):
        _fail(f"the variants marked NO labelled other steps or rollouts than {base}: their ratios compare other work")


@bench_app.command("label")
def bench_label(
    strategies: Annotated[str, typer.Option(help="comma-separated strategies; naive (the baseline) always runs first")] = "naive,early_stop,binary_search,binary_search+early_stop,binary_search+reuse,binary_search+early_stop+reuse",
    dataset: Annotated[str, typer.Option(help="dataset whose problems are labelled (gold agreement needs arith)")] = "arith",
    split: Annotated[Optional[str], typer.Option(help="dataset split (default: train where there is one)")] = None,
    problems: Annotated[int, typer.Option(help="problems")] = 20,
    solutions: Annotated[int, typer.Option("--solutions", "-m", help="M solutions per problem")] = 4,
    rollouts: Annotated[int, typer.Option("--rollouts", "-n", help="N: the rollout budget per prefix")] = 8,
    rollout_max_tokens: Annotated[Optional[int], typer.Option(help="max tokens per rollout (default: the config's)")] = None,
    workdir: Annotated[Path, typer.Option(help="where the base store and one store per strategy are written")] = Path("bench-label"),
    out: Annotated[Path, typer.Option(help="the results as JSON (compare across commits)")] = Path("bench-label.json"),
    config_file: ConfigOption = None,
) -> None:
    """Labelling strategies on the same stored solutions: cost, tokens per labelled step, agreement with gold and naive."""
    from tasks import bench_label as bench

    config = _config(LabelConfig, config_file, {
        "dataset.name": dataset, "dataset.split": split or ("train" if dataset in ("arith", "gsm8k", "math") else None),
        "dataset.limit": problems, "dataset.select": "first",
        "solutions": solutions, "rollouts": rollouts, "rollout.max_tokens": rollout_max_tokens,
    }, None, False)
    try:
        report = bench.run(config, [s.strip() for s in strategies.split(",") if s.strip()], workdir,
                           progress=lambda line: err.print(line))
    except (*_user_errors(), ValueError) as exc:
        _fail(str(exc))
    finally:
        from tasks.completers import close_completers

        close_completers()
    bench.write_json(report, out)
    columns, rows = bench.table_rows(report)
    _print_rows(columns, rows, title=f"prmf bench label: {report['config']['problems']} {dataset} problems x "
                f"{solutions} solutions, N = {rollouts}")
    raw = report["raw_engine"]
    console.print(f"raw engine, naive's {raw['prompts']} prompts x n={raw['n']} in one call: "
                  f"{raw['tokens_per_s']:.1f} tokens/s; the factory's naive labelling reached "
                  f"{report['factory_vs_raw_engine']:.2f}x of it. JSON: {out}")


@bench_app.command("score")
def bench_score(
    variants: Annotated[str, typer.Option(help="comma-separated variants, baseline first: count-8 (old: input order, "
                                          "8 per pass), count-32, sorted-8, tokens-16k (default), tokens-32k")] = (
        "count-8,tokens-16k"),
    samples: Annotated[int, typer.Option(help="ProcessBench solutions to score")] = 256,
    model_config: Annotated[Optional[Path], typer.Option(help="config.json + tokenizer folder of the architecture "
                                                         "(random weights; default: the embedded model's)")] = None,
) -> None:
    """Verifier scoring throughput per batching variant (one process each): solutions/s, tokens/s, padding, peak memory."""
    _bench_verifiers("score", variants, model_config, samples, 8)


@bench_app.command("train")
def bench_train(
    variants: Annotated[str, typer.Option(help="comma-separated variants, baseline first: shuffled, grouped (default), "
                                          "fp32, bf16-mixed, bf16, micro-2, checkpointing")] = "shuffled,grouped",
    samples: Annotated[int, typer.Option(help="ProcessBench solutions in the epoch")] = 64,
    batch_size: Annotated[int, typer.Option(help="solutions per optimizer step")] = 8,
    model_config: Annotated[Optional[Path], typer.Option(help="config.json + tokenizer folder of the architecture "
                                                         "(random weights; default: the embedded model's)")] = None,
) -> None:
    """Verifier training throughput per variant (one process each): one epoch's solutions/s, tokens/s, padding, peak memory."""
    _bench_verifiers("train", variants, model_config, samples, batch_size)


@app.command()
def demo(
    arith_problems: Annotated[int, typer.Option(help="arith problems to label")] = 40,
    gsm8k_problems: Annotated[int, typer.Option(help="GSM8K test problems to label")] = 8,
    eval_arith: Annotated[int, typer.Option(help="arith test problems in the evaluation pool")] = 40,
    eval_benchmarks: Annotated[int, typer.Option(help="MATH500 and GSM8K test problems in the evaluation pools")] = 8,
    validation: Annotated[int, typer.Option(help="arith validation problems that decide promotion")] = 40,
    config_file: ConfigOption = None,
    show_config: ShowConfigOption = False,
    db: DbOption = None,
) -> None:
    """The `make demo` job: label arith and a GSM8K slice, then retrain (PRM he + ORM), evaluate, decide
    promotion on validation (config: the retrain's FactoryConfig)."""
    import time

    from flows.retrain import retrain
    from tasks.config import FactoryConfig, LabelConfig, default_db_path

    started = time.perf_counter()
    db_path = Path(db or default_db_path())
    plot = db_path.resolve().parent / "demo-accuracy.png"
    jobs = [
        LabelConfig(db=db_path, dataset={"name": "arith", "limit": arith_problems}, solutions=4, rollouts=8),
        LabelConfig(db=db_path, dataset={"name": "gsm8k", "split": "test", "limit": gsm8k_problems},
                    solutions=4, rollouts=4, rollout={"temperature": 0.7, "max_tokens": 160}),
    ]
    factory_config = _config(FactoryConfig, config_file, {
        **_db_overrides(db_path, "label", "train", "eval"), "eval.n_max": 8, "eval.plot": str(plot),
        "eval.datasets": [{"name": "arith", "split": "test", "limit": eval_arith},
                          {"name": "math500", "split": "test", "limit": eval_benchmarks},
                          {"name": "gsm8k", "split": "test", "limit": eval_benchmarks}],
        "eval.validation": [{"name": "arith", "split": "validation", "limit": validation}],
    }, show=show_config)
    try:
        _check_models(jobs[0])
        for config in jobs:
            console.rule(f"label {config.dataset.name}: {config.dataset.limit} problems x "
                         f"{config.solutions} solutions x {config.rollouts} rollouts")
            _print_summary(_run_label(config))
        console.rule("retrain: PRM (he) and ORM -> best-of-N on arith validation (decides promotion), "
                     "arith test, MATH500, GSM8K (reported)")
        _print_retrain(_with_progress(retrain, config=factory_config))
    except _user_errors() as exc:
        _fail(str(exc))
    finally:
        from tasks.completers import close_completers

        close_completers()
    console.rule("demo finished")
    console.print(f"wall time: {time.perf_counter() - started:.0f} s    database: {db_path.resolve()}    plot: {plot}")
    console.print("try:\n"
                  f"  .venv/bin/prmf query gold_agreement --db {db_path}\n"
                  f"  .venv/bin/prmf query promotions --db {db_path}\n"
                  f"  .venv/bin/prmf query scorer_diagnostics --db {db_path}\n"
                  f"  .venv/bin/prmf processbench --split math --limit 100 --db {db_path}",
                  soft_wrap=True)


if __name__ == "__main__":
    app()
