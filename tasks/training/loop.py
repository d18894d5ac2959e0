"""The training loop's parts: precision policy, model loading (full or LoRA), length-grouped
batches, and the optimizer step with gradient accumulation.

Precision. On a GPU the default is ``bf16-mixed``: the weights the optimizer updates and its
AdamW state stay fp32, and the forward/backward passes run under bf16 autocast. Keeping the
weights themselves in bf16 (``bf16``) halves their memory but loses updates: bf16 has 8 bits of
mantissa, so an AdamW step of lr 2e-5 on a weight of magnitude 0.01 or more rounds away (measured
on an H200: one epoch changed 22% of the weights in bf16, 79% with fp32 weights;
``tests/test_training_precision.py`` checks it on CPU). CPU training defaults to fp32.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.config import TrainConfig
from tasks.training.data import Example, TrainingError
from tasks.verifiers.step_tag import StepTagCodec, pad_batch, quiet_transformers, tag_log_probs

LENGTH_GROUP_BATCHES = 50  # batches per length-sorted megabatch: shapes repeat, order stays random


@dataclass(frozen=True)
class PrecisionPolicy:
    """``param_dtype``: the weights the optimizer updates (and its state); ``autocast_dtype``: the
    compute dtype of forward/backward passes (None: compute in ``param_dtype``)."""

    name: str
    param_dtype: Any
    autocast_dtype: Any | None

    def autocast(self, device: str):
        import torch

        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device, dtype=self.autocast_dtype)


def precision_policy(setting: str, device: str) -> PrecisionPolicy:
    import torch

    name = ("bf16-mixed" if device == "cuda" else "fp32") if setting == "auto" else setting
    if name == "fp32":
        return PrecisionPolicy(name, torch.float32, None)
    if name == "bf16-mixed":
        return PrecisionPolicy(name, torch.float32, torch.bfloat16)
    if name == "bf16":
        return PrecisionPolicy(name, torch.bfloat16, None)
    raise TrainingError(f"unknown precision {setting!r}; known: auto, fp32, bf16-mixed, bf16")


def load_trainable_model(base_path: Path, config: TrainConfig, device: str, policy: PrecisionPolicy) -> Any:
    """The base model ready to train: every weight in ``policy.param_dtype``, or, with LoRA, a
    frozen base in the compute dtype and adapters in ``policy.param_dtype``."""
    import torch
    from transformers import AutoModelForCausalLM

    quiet_transformers()
    frozen_dtype = policy.autocast_dtype or policy.param_dtype
    model = AutoModelForCausalLM.from_pretrained(base_path, dtype=frozen_dtype if config.lora else policy.param_dtype)
    if config.gradient_checkpointing:
        # Non-reentrant checkpointing needs no input that requires grad (a frozen LoRA base has none).
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if config.lora:
        from peft import LoraConfig, get_peft_model

        lora = config.lora
        targets = lora.target_modules if isinstance(lora.target_modules, str) else list(lora.target_modules)
        model = get_peft_model(model, LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                                                 target_modules=targets, task_type="CAUSAL_LM"))
        for param in model.parameters():
            if param.requires_grad:
                param.data = param.data.to(policy.param_dtype)
    model.to(device)
    model.train()
    if not any(p.requires_grad for p in model.parameters()):
        raise TrainingError(f"{base_path}: no trainable parameters (check lora.target_modules)")
    return model


def length_grouped_batches(lengths: Sequence[int], batch_size: int, rng: random.Random,
                           grouped: bool = True) -> list[list[int]]:
    """One epoch's batches of indices. Grouped: shuffle, sort each megabatch of
    ``LENGTH_GROUP_BATCHES`` batches by length, cut it into batches, shuffle the batches; so a
    batch holds solutions of similar length (little padding, few distinct shapes) and the order
    stays random. Ungrouped: a plain shuffle."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    if not grouped:
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    span = batch_size * LENGTH_GROUP_BATCHES
    batches = []
    for start in range(0, len(order), span):
        mega = sorted(order[start : start + span], key=lambda i: lengths[i])
        batches += [mega[i : i + batch_size] for i in range(0, len(mega), batch_size)]
    rng.shuffle(batches)
    return batches


def step_loss(log_good, log_bad, targets, weights=None):
    """Cross-entropy against a (possibly soft) target probability of "good", mean over the tags
    (``weights``: the weighted mean).

    ``-(t log p(+) + (1 - t) log p(-))`` is cross-entropy for t in {0, 1} and binary
    cross-entropy on the probability for soft t (TRL's PRMTrainer casts labels to int, so it
    cannot train SE)."""
    if weights is None:
        return -(targets * log_good + (1 - targets) * log_bad).mean()
    return -(weights * (targets * log_good + (1 - targets) * log_bad)).sum() / weights.sum()


ClassWeights = tuple[float, float]  # per-tag loss weight of a target < 0.5, of a target >= 0.5


def class_balance_weights(targets: Sequence[float]) -> ClassWeights:
    """Weights that make the two buckets (target < 0.5, >= 0.5) weigh equally in the loss, as the
    PAV paper's class-balanced training: ``w = n / (2 n_bucket)`` over the ``n`` targets given
    (the training set's scored tags), so each bucket's weights sum to n / 2. An empty bucket gets 0
    (no tag uses it; the other bucket's constant weight leaves the plain mean)."""
    below = sum(1 for t in targets if t < 0.5)
    above = len(targets) - below
    return (len(targets) / (2 * below) if below else 0.0, len(targets) / (2 * above) if above else 0.0)


def tag_weights(values, class_weights: ClassWeights):
    """Each target's class weight (a tensor like ``values``)."""
    import torch

    return torch.where(values < 0.5, class_weights[0], class_weights[1]).to(values.dtype)


Encoded = tuple[list[int], list[int]]  # token ids, tag positions


class Trainer:
    """AdamW on the trainable weights, linear warm-up over 10% of ``total_steps``, gradient
    clipping at 1, ``batch_size / micro_batch_size`` accumulated passes per optimizer step.
    ``class_weights`` (:func:`class_balance_weights`, computed once over the training set): the
    loss is the class-weighted mean; None: the plain mean."""

    def __init__(self, model: Any, codec: StepTagCodec, config: TrainConfig, device: str, policy: PrecisionPolicy,
                 total_steps: int, class_weights: ClassWeights | None = None):
        import torch

        self.model, self.codec, self.config, self.device, self.policy = model, codec, config, device, policy
        self.class_weights = class_weights
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=config.lr, weight_decay=config.weight_decay)
        warmup = max(1, total_steps // 10)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda step: min(1.0, (step + 1) / warmup))
        self.micro_batch_size = config.micro_batch_size or config.batch_size

    def step(self, encoded: Sequence[Encoded], targets: Sequence[Sequence[float | None]]) -> float | None:
        """One optimizer step on a batch; returns its mean loss (None: no step carries a target)."""
        import torch

        loss = self.accumulate_gradients(encoded, targets)
        if loss is None:
            return None
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.optimizer.step()
        self.scheduler.step()
        return loss

    def accumulate_gradients(self, encoded: Sequence[Encoded], targets: Sequence[Sequence[float | None]]) -> float | None:
        """The gradient of the batch's mean loss, in ``.grad``, from ``micro_batch_size`` passes.

        Each pass's summed loss is divided by the whole batch's tag count (with class weights: its
        summed weight), so the accumulated gradient equals the whole batch's, whatever the
        micro-batch size (AdamW would hide a wrong scale, not a wrong weighting of the passes)."""
        scored = [t for (_, positions), row in zip(encoded, targets) for _, t in zip(positions, row) if t is not None]
        tags = len(scored)
        if not tags:
            return None
        if self.class_weights is not None:
            below, above = self.class_weights
            batch_weight = sum(below if t < 0.5 else above for t in scored)
        self.optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for start in range(0, len(encoded), self.micro_batch_size):
            part = slice(start, start + self.micro_batch_size)
            input_ids, mask, rows, cols, values = pad_batch(self.codec, encoded[part], targets[part], self.device)
            if not len(values):
                continue
            with self.policy.autocast(self.device):
                log_good, log_bad = tag_log_probs(self.model, self.codec, input_ids, mask, rows, cols)
            if self.class_weights is None:
                loss = step_loss(log_good, log_bad, values) * (len(values) / tags)  # this pass's share of the mean
            else:
                weights = tag_weights(values, self.class_weights)
                loss = step_loss(log_good, log_bad, values, weights) * (float(weights.sum()) / batch_weight)
            loss.backward()
            total += float(loss.detach())
        return total


def evaluate(model: Any, codec: StepTagCodec, examples: list[Example], batch_size: int, device: str,
             policy: PrecisionPolicy | None = None) -> dict[str, float]:
    """Validation loss and accuracy (score > 0.5 vs target > 0.5) over the scored steps; the plain
    mean, class balance or not, so a model's validation losses stay comparable."""
    import torch

    model.eval()
    total = correct = 0
    loss_sum = 0.0
    autocast = policy.autocast(device) if policy else contextlib.nullcontext()
    encoded = codec.encode_many([(e.question, e.steps) for e in examples])
    with torch.no_grad(), autocast:
        for start in range(0, len(examples), batch_size):
            part = slice(start, start + batch_size)
            input_ids, mask, rows, cols, targets = pad_batch(codec, encoded[part], [e.targets for e in examples[part]],
                                                             device)
            if not len(targets):
                continue
            log_good, log_bad = tag_log_probs(model, codec, input_ids, mask, rows, cols)
            loss_sum += float(step_loss(log_good, log_bad, targets)) * len(targets)
            correct += int(((log_good.exp() > 0.5) == (targets > 0.5)).sum())
            total += len(targets)
    model.train()
    if not total:
        raise TrainingError("the validation problems have no scored steps")
    return {"val_loss": loss_sum / total, "val_accuracy": correct / total, "val_steps": float(total)}
