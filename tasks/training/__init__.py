"""Verifier training from the store's step labels: data (:mod:`.data`), the loop's parts
(:mod:`.loop`: precision, LoRA, batching, the optimizer step), what the data cost (:mod:`.cost`) and
checkpointing (here).

The trained checkpoint is a step-tag verifier (:mod:`tasks.verifiers.step_tag`): a PRM tags
every step and learns the step targets, an ORM tags the final step and learns the solution's
correctness. Both use one loss (:func:`.loop.step_loss`). A PAV model (``target="pav"``) is a PRM
whose score is the squashed effective reward; its prm.json names the prover, alpha and base
evaluation, so :func:`tasks.labelling.advantages.unsquash_score` reads a score back as a reward.

Checkpoint. The epoch with the best validation loss is saved if it beats the base model;
otherwise the last epoch is. ``val_metrics`` are the saved epoch's, with ``saved_epoch`` and
``saved_because`` saying which and why. The checkpoint is written to a staging folder and renamed
into place only when complete; the model is registered only after that. With LoRA the saved
checkpoint is the base with the best epoch's adapters merged, so scoring loads it like any other.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.config import TrainConfig
from tasks.models import resolve_model
from tasks.progress import progress
from tasks.registry import label_snapshot
from tasks.store import Store, to_json
from tasks.training.cost import TrainingCost, training_cost
from tasks.training.data import (
    Example,
    TrainingData,
    TrainingError,
    eval_questions,
    evaluation_pool_questions,
    is_eval_problem,
    load_examples,
    load_training_data,
    normalize_question,
    split_by_problem,
    step_targets,
)
from tasks.training.loop import (
    PrecisionPolicy,
    Trainer,
    class_balance_weights,
    evaluate,
    length_grouped_batches,
    load_trainable_model,
    precision_policy,
    step_loss,
)
from tasks.verifiers import VERIFIER_METADATA
from tasks.verifiers.step_tag import BAD, GOOD, STEP_TAG, StepTagCodec, default_device

__all__ = ["Example", "PrecisionPolicy", "TrainResult", "Trainer", "TrainingData", "TrainingError",
           "class_balance_weights", "eval_questions", "evaluate", "evaluation_pool_questions", "is_eval_problem",
           "length_grouped_batches", "load_examples", "load_trainable_model", "load_training_data",
           "normalize_question", "precision_policy", "split_by_problem", "step_loss", "step_targets",
           "train_reward_model", "train_task", "TrainingCost", "training_cost"]


@dataclass
class TrainResult:
    model_id: str
    path: Path
    train_examples: int
    val_examples: int
    excluded_problems: int
    history: list[dict[str, float]] = field(default_factory=list)
    val_metrics: dict[str, Any] = field(default_factory=dict)


def train_reward_model(store: Store, config: TrainConfig, run_id: str | None = None) -> TrainResult:
    """Fine-tune the base model on the store's labels, save the best checkpoint, register it.

    The store is released while the model trains, so label runs can keep storing meanwhile.
    """
    if config.kind == "implicit":
        from tasks.training.implicit import train_implicit  # imports this package

        return train_implicit(store, config, run_id)
    data = load_training_data(store, config)
    examples, excluded = data.examples, data.excluded
    if not examples:
        if config.kind == "prm" and config.target == "gold":
            raise TrainingError(f"{store.path}: no solutions with gold step labels to train the oracle on (gold labels "
                                "exist for arith: `prmf label --dataset arith` samples solutions)")
        raise TrainingError(f"{store.path}: no fully labelled solutions to train on (run `prmf label` first)")
    train, val = split_by_problem(examples, config.val_fraction, config.seed)
    snapshot = label_snapshot(store)
    snapshot.update(problems=len({e.problem_id for e in examples}), train_solutions=len(train), val_solutions=len(val),
                    excluded_eval_problems=excluded, **data.snapshot)
    base = resolve_model(config.base_model)
    model_id = _model_id(config)
    with store.released():
        final_dir, history, val_metrics = fit(base.path, train, val, config, model_id, data.meta)
    hyper = {k: v for k, v in config.model_dump(mode="json").items() if k not in ("db", "models_dir")}
    cost = training_cost(store, (e.solution_id for e in examples), config.kind, config.target,
                         val_metrics["train_tokens"])
    with store.transaction():
        store.insert_rows("prm_models", [{
            "model_id": model_id, "kind": config.kind, "base_model": base.identity,
            "target": config.target if config.kind == "prm" else "correct", "path": str(final_dir.resolve()),
            "data_snapshot": to_json(snapshot), "hyperparameters": to_json(hyper), "val_metrics": to_json(val_metrics),
            "run_id": run_id, **cost.columns(),
        }])
    return TrainResult(model_id, final_dir, len(train), len(val), excluded, history, val_metrics)


def fit(base_path: Path, train: list[Example], val: list[Example], config: TrainConfig,
        model_id: str, meta: dict[str, Any] | None = None) -> tuple[Path, list[dict[str, float]], dict[str, Any]]:
    """The training loop: saves the best-validation epoch if it beats the base model, else the
    last epoch; returns the folder, the history, and the saved epoch's metrics. ``meta`` (what the
    targets were computed from) goes into prm.json."""
    import torch
    from transformers import AutoTokenizer

    device = default_device()
    policy = precision_policy(config.precision, device)
    torch.manual_seed(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(base_path)
    model = load_trainable_model(base_path, config, device, policy)
    codec = StepTagCodec(tokenizer, config.max_length, tag_every_step=config.kind == "prm")
    tokenized = codec.tokenize_many([(e.question, e.steps) for e in train])  # once: every epoch reuses it
    encoded = [codec.encode_tokenized(t) for t in tokenized]
    truncated = {"train_truncated_solutions": sum(codec.cut_tokenized(t) for t in tokenized),
                 "val_truncated_solutions": sum(codec.cut_many([(e.question, e.steps) for e in val]))}
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    class_weights = None
    if config.class_balance:  # once, over the tags the loss sees (a cut solution's later steps are not)
        class_weights = class_balance_weights([t for (_, positions), e in zip(encoded, train)
                                               for _, t in zip(positions, e.targets) if t is not None])
    trainer = Trainer(model, codec, config, device, policy, total_steps, class_weights)
    eval_batch = config.micro_batch_size or config.batch_size

    history = [{"step": 0, **evaluate(model, codec, val, eval_batch, device, policy)}]
    best = history[0]["val_loss"]
    saved: tuple[int, str] | None = None  # (history index = 1-based epoch, reason)
    best_adapters: dict[str, Any] | None = None
    final_dir = config.models_dir / model_id
    _remove_abandoned_staging(config.models_dir)
    # Renamed into place only when complete; the pid tells a later run whether it was abandoned.
    staging = config.models_dir / f".{model_id}.{os.getpid()}.partial"
    shuffler = random.Random(config.seed)
    step, loss = 0, None
    train_tokens = 0
    started = time.perf_counter()
    with progress(f"training {config.kind}", total_steps) as advance:
        for epoch in range(1, config.epochs + 1):
            for batch in length_grouped_batches([len(ids) for ids, _ in encoded], config.batch_size, shuffler,
                                                config.length_grouping):
                step += 1
                advance(1)
                batch_loss = trainer.step([encoded[i] for i in batch], [train[i].targets for i in batch])
                train_tokens += sum(len(encoded[i][0]) for i in batch)
                loss = batch_loss if batch_loss is not None else loss
            metrics = {"step": step, "train_loss": float("nan") if loss is None else loss,
                       **evaluate(model, codec, val, eval_batch, device, policy)}
            history.append(metrics)
            if metrics["val_loss"] < best:  # keep the best epoch's weights
                best = metrics["val_loss"]
                saved = (epoch, "best validation loss")
                if config.lora:  # adapters are small: keep them in memory, merge once at the end
                    best_adapters = _adapter_state(model)
                else:
                    _save(model, tokenizer, config, staging, meta)
    train_seconds = time.perf_counter() - started
    if saved is None:  # no epoch beat the base model: keep the last one, say so in metrics
        saved = (config.epochs, "last epoch: no epoch beat the base model")
        best_adapters = _adapter_state(model) if config.lora else None
        if not config.lora:
            _save(model, tokenizer, config, staging, meta)
    if config.lora:
        _save_merged(model, best_adapters, tokenizer, config, staging, meta)
    if final_dir.exists():
        shutil.rmtree(final_dir)
    staging.rename(final_dir)
    val_metrics = {**history[saved[0]], "saved_epoch": saved[0], "saved_because": saved[1],
                   "base_val_loss": history[0]["val_loss"], "base_val_accuracy": history[0]["val_accuracy"],
                   "train_seconds": train_seconds, "train_tokens": train_tokens,
                   "train_tokens_per_s": train_tokens / max(train_seconds, 1e-9), "precision": policy.name, **truncated}
    if class_weights is not None:
        val_metrics["class_weights"] = {"below_half": class_weights[0], "at_least_half": class_weights[1]}
    if device == "cuda":
        val_metrics["peak_gpu_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return final_dir, history, val_metrics


def _adapter_state(model: Any) -> dict[str, Any]:
    from peft import get_peft_model_state_dict

    return {k: v.detach().to("cpu", copy=True) for k, v in get_peft_model_state_dict(model).items()}


def _save_merged(model: Any, adapters: dict[str, Any] | None, tokenizer: Any, config: TrainConfig, folder: Path,
                 meta: dict[str, Any] | None = None) -> None:
    from peft import set_peft_model_state_dict

    if adapters is not None:
        set_peft_model_state_dict(model, adapters)
    _save(model.merge_and_unload(), tokenizer, config, folder, meta)


def _remove_abandoned_staging(models_dir: Path) -> None:
    """Delete staging folders left by killed trainings (their process is gone)."""
    from tasks.runs import process_alive

    for folder in models_dir.glob(".*.partial"):
        pid = folder.name.rsplit(".", 2)[-2]
        if pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _model_id(config: TrainConfig) -> str:
    now = datetime.now(timezone.utc)
    digest = hashlib.sha256(f"{now.isoformat()}{config.model_dump_json()}".encode()).hexdigest()[:6]
    target = config.target if config.kind == "prm" else "correct"
    return f"{config.kind}-{target}-{now:%Y%m%d-%H%M%S}-{digest}"


def _save(model: Any, tokenizer: Any, config: TrainConfig, folder: Path, meta: dict[str, Any] | None = None) -> None:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    meta = {"kind": config.kind, "step_tag": STEP_TAG, "good_token": GOOD, "bad_token": BAD,
            "target": config.target, "max_length": config.max_length, "format": "chat user turn = question",
            "precision": config.precision, "lora": config.lora.model_dump(mode="json") if config.lora else None,
            **(meta or {})}
    (folder / VERIFIER_METADATA).write_text(json.dumps(meta, indent=1))


def result_dict(result: TrainResult) -> dict[str, Any]:
    data = asdict(result)
    data["path"] = str(result.path)
    return data


@task(name="train-reward-model", cache_policy=NO_CACHE, task_run_name="train-{config.kind}-{config.target}")
def train_task(config: TrainConfig, run_id: str | None = None) -> dict[str, Any]:
    # No retries: a failed training leaves only a staging folder, never a registered model.
    with Store(config.db) as store:
        return result_dict(train_reward_model(store, config, run_id))
