"""Training an implicit PRM (``prmf train --kind implicit``; :mod:`tasks.verifiers.implicit`).

Data. Every graded solution in the store that has all its steps, labelled by its correctness only
(no rollouts or step labels needed); a grading timeout or error is no label. The same hygiene as
the step-tag verifiers: split by problem, evaluation problems never trained on
(:func:`.data.is_eval_problem`). A solution is trained on whole or not at all (its label is about
the whole response): one longer than ``max_length`` is left out and counted.

Loss. ``ce`` (default): :func:`ce_loss` of every solution, the mean over a batch of ``batch_size``
solutions. ``dpo``: :func:`dpo_loss` on (correct, incorrect) pairs of the same problem, the mean
over a batch of ``batch_size`` pairs; each problem gives max(#correct, #incorrect) pairs, cycling
through the shorter list, so every solution of a problem that has both kinds is used. The log ratio
sums the response tokens only (the steps and their separators, not the prompt).

Reference. pi_ref is the base model itself. Its log-probabilities are computed once, before the
first update, by the model being trained (then identical to the base), so training holds one model
and runs one extra forward pass per solution in all. prm.json records the base model's setting,
identity and path; scoring resolves it again (:func:`tasks.verifiers.implicit.resolve_reference`).

Checkpoint. As the step-tag verifiers: the best-validation-loss epoch if it beats the base model,
else the last; staging folder renamed into place, then the ``prm_models`` row (kind ``implicit``,
target ``outcome``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tasks.config import TrainConfig
from tasks.diagnostics import auc
from tasks.models import ResolvedModel, resolve_model
from tasks.progress import progress
from tasks.registry import label_snapshot
from tasks.store import Store, internal_sql, to_json
from tasks.training import TrainResult, _adapter_state, _remove_abandoned_staging
from tasks.training.cost import training_cost
from tasks.training.data import (
    Example,
    TrainingData,
    TrainingError,
    evaluation_pool_questions,
    is_eval_problem,
    split_by_problem,
    training_slice,
    wanted_row,
)
from tasks.training.loop import PrecisionPolicy, length_grouped_batches, load_trainable_model, precision_policy
from tasks.verifiers import VERIFIER_METADATA
from tasks.verifiers.implicit import (
    STEP_SEPARATOR,
    Encoded,
    ImplicitCodec,
    ce_loss,
    dpo_loss,
    pad_responses,
    pad_token_id,
    response_log_probs,
)
from tasks.verifiers.step_tag import default_device

# TrainConfig fields that only the step-tag verifiers read: left out of an implicit model's record.
STEP_TAG_ONLY = ("target", "prover", "alpha", "class_balance", "after_first_error", "inferred_labels")
DEFAULT_READOUT = "step"


def load_outcome_data(store: Store, config: TrainConfig) -> TrainingData:
    """Every graded solution with its steps and correctness (one target: 1.0 or 0.0), minus
    evaluation problems; ``excluded`` counts the problems left out as evaluation problems."""
    pooled = evaluation_pool_questions(store)
    allowed = training_slice(store, config)
    by_solution: dict[str, list[dict[str, Any]]] = {}
    for row in store.query(internal_sql("implicit_training_solutions")).as_dicts():
        if not wanted_row(row, config, allowed):
            continue
        by_solution.setdefault(row["solution_id"], []).append(row)
    examples, excluded = [], set()
    for steps in by_solution.values():
        first = steps[0]
        if is_eval_problem(first["dataset"], first["split"], first["question"], pooled):
            excluded.add(first["problem_id"])
            continue
        examples.append(Example(first["problem_id"], first["question"], tuple(s["text"] for s in steps),
                                (float(first["correct"]),), first["solution_id"]))
    snapshot = {"solutions": len(examples), "correct_solutions": sum(e.targets[0] == 1.0 for e in examples)}
    return TrainingData(examples, len(excluded), {}, snapshot)


def dpo_pairs(examples: Sequence[Example]) -> list[tuple[int, int]]:
    """(correct, incorrect) index pairs within each problem: max(#correct, #incorrect) per problem,
    cycling through the shorter list; a problem with one kind only gives none."""
    by_problem: dict[str, tuple[list[int], list[int]]] = {}
    for i, e in enumerate(examples):
        by_problem.setdefault(e.problem_id, ([], []))[0 if e.targets[0] == 1.0 else 1].append(i)
    pairs = []
    for right, wrong in by_problem.values():
        if right and wrong:
            pairs += [(right[k % len(right)], wrong[k % len(wrong)]) for k in range(max(len(right), len(wrong)))]
    return pairs


def train_implicit(store: Store, config: TrainConfig, run_id: str | None = None) -> TrainResult:
    """Train an implicit PRM on the store's solution correctness, save the best checkpoint, register it."""
    data = load_outcome_data(store, config)
    if not data.examples:
        raise TrainingError(f"{store.path}: no graded solutions with steps to train on (outside evaluation problems)")
    train, val = split_by_problem(data.examples, config.val_fraction, config.seed)
    snapshot = label_snapshot(store)
    snapshot.update(problems=len({e.problem_id for e in data.examples}), train_solutions=len(train),
                    val_solutions=len(val), excluded_eval_problems=data.excluded, **data.snapshot)
    base = resolve_model(config.base_model)
    model_id = _model_id(config)
    with store.released():
        final_dir, history, val_metrics = fit_implicit(base, train, val, config, model_id)
    hyper = {k: v for k, v in config.model_dump(mode="json").items()
             if k not in ("db", "models_dir", *STEP_TAG_ONLY)}
    cost = training_cost(store, (e.solution_id for e in data.examples), "implicit", "outcome",
                         val_metrics["train_tokens"])
    with store.transaction():
        store.insert_rows("prm_models", [{
            "model_id": model_id, "kind": "implicit", "base_model": base.identity, "target": "outcome",
            "path": str(final_dir.resolve()), "data_snapshot": to_json(snapshot), "hyperparameters": to_json(hyper),
            "val_metrics": to_json(val_metrics), "run_id": run_id, **cost.columns(),
        }])
    return TrainResult(model_id, final_dir, len(train), len(val), data.excluded, history, val_metrics)


def _model_id(config: TrainConfig) -> str:
    now = datetime.now(timezone.utc)
    digest = hashlib.sha256(f"{now.isoformat()}{config.model_dump_json()}".encode()).hexdigest()[:6]
    return f"implicit-{config.loss}-{now:%Y%m%d-%H%M%S}-{digest}"


def sequence_log_ratios(model: Any, encoded: Sequence[Encoded], ref_sums, device: str, policy: PrecisionPolicy,
                        pad_id: int):
    """log pi_theta(y) - log pi_ref(y) of each solution's response (``ref_sums``: log pi_ref(y));
    with ``ref_sums`` None, log pi_theta(y) itself."""
    import torch

    input_ids, mask, rows, cols = pad_responses(encoded, pad_id, device)
    with policy.autocast(device):
        log_probs = response_log_probs(model, input_ids, mask, rows, cols)
    sums = torch.zeros(len(encoded), dtype=torch.float32, device=device).index_add(0, rows, log_probs.float())
    return sums if ref_sums is None else sums - ref_sums


def accumulate_implicit_gradients(model: Any, batch: Sequence[tuple[int, ...]], encoded: Sequence[Encoded], ref_sums,
                                  labels, config: TrainConfig, device: str, policy: PrecisionPolicy,
                                  pad_id: int) -> float:
    """Backpropagate the mean loss of ``batch`` (units: ``(solution,)`` for ce, ``(correct,
    incorrect)`` pairs for dpo, indices into ``encoded``/``ref_sums``/``labels``) in passes of
    ``config.micro_batch_size`` units; each pass adds its share of the batch mean, so the
    accumulated gradient is the whole batch's. Returns the batch's mean loss."""
    micro = config.micro_batch_size or config.batch_size
    total = 0.0
    for start in range(0, len(batch), micro):
        part = batch[start : start + micro]
        if config.loss == "ce":
            rows = [i for (i,) in part]
            ratios = sequence_log_ratios(model, [encoded[i] for i in rows], ref_sums[rows], device, policy, pad_id)
            losses = ce_loss(ratios, labels[rows], config.beta)
        else:  # both solutions of each pair in one pass
            rows = [w for w, _ in part] + [l_ for _, l_ in part]
            ratios = sequence_log_ratios(model, [encoded[i] for i in rows], ref_sums[rows], device, policy, pad_id)
            losses = dpo_loss(ratios[: len(part)], ratios[len(part):], config.beta)
        loss = losses.sum() / len(batch)  # this pass's share of the batch mean
        loss.backward()
        total += float(loss.detach())
    return total


def _log_ratios(model: Any, encoded: list[Encoded], ref_sums, batch_size: int, device: str, policy: PrecisionPolicy,
                pad_id: int):
    """:func:`sequence_log_ratios` of every solution, without gradients, in batches in input order."""
    import torch

    model.eval()
    with torch.no_grad():
        parts = [sequence_log_ratios(model, encoded[s : s + batch_size],
                                     None if ref_sums is None else ref_sums[s : s + batch_size], device, policy, pad_id)
                 for s in range(0, len(encoded), batch_size)]
    model.train()
    return torch.cat(parts)


def _metrics(log_ratios, labels, pairs: list[tuple[int, int]], config: TrainConfig) -> dict[str, Any]:
    """Validation loss (the training loss, plain mean), accuracy (ce: sigmoid(reward) > 0.5 agrees
    with correctness; dpo: the correct solution of a pair has the higher reward) and the AUC of the
    outcome reward against correctness."""
    if config.loss == "dpo":
        w, l_ = zip(*pairs)
        loss = float(dpo_loss(log_ratios[list(w)], log_ratios[list(l_)], config.beta).mean())
        accuracy = float((log_ratios[list(w)] > log_ratios[list(l_)]).float().mean())
    else:
        loss = float(ce_loss(log_ratios, labels, config.beta).mean())
        accuracy = float(((log_ratios > 0) == (labels > 0.5)).float().mean())
    rewards = (config.beta * log_ratios).tolist()
    return {"val_loss": loss, "val_accuracy": accuracy, "val_auc": auc(rewards, (labels > 0.5).tolist()),
            "val_solutions": float(len(rewards))}


def _encode_fitting(codec: ImplicitCodec, examples: list[Example]) -> tuple[list[Example], list[Encoded], int]:
    kept, encoded = [], []
    for e, t in zip(examples, codec.tokenize_many([(e.question, e.steps) for e in examples])):
        if codec.fits(t):
            kept.append(e)
            encoded.append(codec.encode(t))
    return kept, encoded, len(examples) - len(kept)


def fit_implicit(base: ResolvedModel, train: list[Example], val: list[Example], config: TrainConfig,
                 model_id: str) -> tuple[Path, list[dict[str, Any]], dict[str, Any]]:
    """The training loop; returns the checkpoint folder, the history, and the saved epoch's metrics."""
    import torch
    from transformers import AutoTokenizer

    device = default_device()
    policy = precision_policy(config.precision, device)
    torch.manual_seed(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(base.path)
    pad_id = pad_token_id(tokenizer)
    codec = ImplicitCodec(tokenizer, config.max_length)
    train, train_encoded, train_dropped = _encode_fitting(codec, train)
    val, val_encoded, val_dropped = _encode_fitting(codec, val)
    if not train or not val:
        raise TrainingError(f"no {'training' if not train else 'validation'} solution fits in max_length "
                            f"{config.max_length} tokens")
    train_pairs, val_pairs = dpo_pairs(train), dpo_pairs(val)
    if config.loss == "dpo" and not (train_pairs and val_pairs):
        raise TrainingError(f"loss dpo: no {'training' if not train_pairs else 'validation'} problem has both a "
                            "correct and an incorrect solution")
    labels = torch.tensor([e.targets[0] for e in train], dtype=torch.float32, device=device)
    val_labels = torch.tensor([e.targets[0] for e in val], dtype=torch.float32, device=device)
    model = load_trainable_model(Path(base.path), config, device, policy)
    eval_batch = config.micro_batch_size or config.batch_size
    # pi_ref = the base model = this model before its first update.
    ref_train = _log_ratios(model, train_encoded, None, eval_batch, device, policy, pad_id)
    ref_val = _log_ratios(model, val_encoded, None, eval_batch, device, policy, pad_id)

    def evaluate() -> dict[str, Any]:
        return _metrics(_log_ratios(model, val_encoded, ref_val, eval_batch, device, policy, pad_id).cpu(),
                        val_labels.cpu(), val_pairs, config)

    # One unit per loss term: a solution (ce) or a pair (dpo).
    units: list[tuple[int, ...]] = [(i,) for i in range(len(train))] if config.loss == "ce" else list(train_pairs)
    unit_tokens = [sum(len(train_encoded[i][0]) for i in unit) for unit in units]
    params = [p for p in model.parameters() if p.requires_grad]
    # The step-tag Trainer's schedule: AdamW, linear warm-up over 10% of the steps, clipping at 1.
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    total_steps = math.ceil(len(units) / config.batch_size) * config.epochs
    warmup = max(1, total_steps // 10)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup))

    def optimizer_step(batch: list[tuple[int, ...]]) -> float:
        optimizer.zero_grad(set_to_none=True)
        total = accumulate_implicit_gradients(model, batch, train_encoded, ref_train, labels, config, device, policy,
                                              pad_id)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        return total

    history: list[dict[str, Any]] = [{"step": 0, **evaluate()}]
    best = history[0]["val_loss"]
    saved: tuple[int, str] | None = None
    best_adapters: dict[str, Any] | None = None
    meta = _metadata(config, base)
    final_dir = config.models_dir / model_id
    _remove_abandoned_staging(config.models_dir)
    staging = config.models_dir / f".{model_id}.{os.getpid()}.partial"
    shuffler = random.Random(config.seed)
    step, loss = 0, float("nan")
    train_tokens = 0
    started = time.perf_counter()
    with progress("training implicit", total_steps) as advance:
        for epoch in range(1, config.epochs + 1):
            for batch in length_grouped_batches(unit_tokens, config.batch_size, shuffler, config.length_grouping):
                step += 1
                advance(1)
                loss = optimizer_step([units[i] for i in batch])
                train_tokens += sum(unit_tokens[i] for i in batch)
            metrics = {"step": step, "train_loss": loss, **evaluate()}
            history.append(metrics)
            if metrics["val_loss"] < best:
                best = metrics["val_loss"]
                saved = (epoch, "best validation loss")
                if config.lora:  # adapters are small: keep them in memory, merge once at the end
                    best_adapters = _adapter_state(model)
                else:
                    _save(model, tokenizer, staging, meta)
    train_seconds = time.perf_counter() - started
    if saved is None:
        saved = (config.epochs, "last epoch: no epoch beat the base model")
        best_adapters = _adapter_state(model) if config.lora else None
        if not config.lora:
            _save(model, tokenizer, staging, meta)
    if config.lora:
        from peft import set_peft_model_state_dict

        if best_adapters is not None:
            set_peft_model_state_dict(model, best_adapters)
        _save(model.merge_and_unload(), tokenizer, staging, meta)
    if final_dir.exists():
        shutil.rmtree(final_dir)
    staging.rename(final_dir)
    first = history[0]
    val_metrics = {**history[saved[0]], "saved_epoch": saved[0], "saved_because": saved[1],
                   "base_val_loss": first["val_loss"], "base_val_accuracy": first["val_accuracy"],
                   "base_val_auc": first["val_auc"], "train_seconds": train_seconds, "train_tokens": train_tokens,
                   "train_tokens_per_s": train_tokens / max(train_seconds, 1e-9), "precision": policy.name,
                   "train_too_long_solutions": train_dropped, "val_too_long_solutions": val_dropped}
    if config.loss == "dpo":
        val_metrics.update(train_pairs=len(train_pairs), val_pairs=len(val_pairs))
    if device == "cuda":
        val_metrics["peak_gpu_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return final_dir, history, val_metrics


def _metadata(config: TrainConfig, base: ResolvedModel) -> dict[str, Any]:
    return {"kind": "implicit", "beta": config.beta, "loss": config.loss, "readout": DEFAULT_READOUT,
            "reference": {"setting": config.base_model, "identity": base.identity, "path": base.path},
            "target": "outcome", "max_length": config.max_length, "step_separator": STEP_SEPARATOR,
            "format": "chat user turn = question; assistant turn = the steps, each followed by a newline",
            "precision": config.precision, "lora": config.lora.model_dump(mode="json") if config.lora else None}


def _save(model: Any, tokenizer: Any, folder: Path, meta: dict[str, Any]) -> None:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / VERIFIER_METADATA).write_text(json.dumps(meta, indent=1))
