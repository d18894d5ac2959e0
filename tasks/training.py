"""Reward-model training from the store's step labels (Math-Shepherd style step tags).

Format. A solution is the chat prompt (the question as the user turn) followed by its steps
in the assistant turn, each step followed by the tag `` ки`` and a newline. The model's output
at a tag's last token is read over two candidate tokens, ``+`` (good) and ``-`` (bad); the
step's score is ``softmax([logit(+), logit(-)])[0]``. Any causal LM works as the base; nothing
is added to the network, so a trained PRM is an ordinary checkpoint plus ``prm.json``.

Targets. ``he``: 1 if any rollout from the prefix reached the right answer; ``se``: the fraction
that did. Both use the same loss, ``-(t log p(+) + (1 - t) log p(-))``, which is cross-entropy
for t in {0, 1} and binary cross-entropy on the probability for soft t (TRL's PRMTrainer casts
labels to int, so it cannot train SE). With ``after_first_error="drop"`` the steps after the
first HE = 0 step carry no loss (their label is implied). An ORM tags only the end of the
solution, with the solution's correctness as target.

Data hygiene. Train/validation is split by problem, never by step. Evaluation problems are
never trained on: any problem of a test split or of MATH500, and any problem whose question
text matches a GSM8K-test, MATH500, ProcessBench or arith-test question (:func:`eval_questions`),
whatever split or dataset it was ingested under.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.config import TrainConfig
from tasks.models import resolve_model
from tasks.progress import progress
from tasks.registry import label_snapshot
from tasks.store import Store, internal_sql, to_json

STEP_TAG = " ки"
GOOD, BAD = "+", "-"
ARITH_EVAL_PROBLEMS = 1000  # the arith test problems any evaluation may use
PRM_METADATA = "prm.json"


class TrainingError(RuntimeError):
    """Training cannot start or finish (no labels, too few problems, bad base model)."""


@dataclass(frozen=True)
class Example:
    problem_id: str
    question: str
    steps: tuple[str, ...]
    targets: tuple[float | None, ...]  # one per step; None = no loss on this step


@dataclass
class TrainResult:
    model_id: str
    path: Path
    train_examples: int
    val_examples: int
    excluded_problems: int
    history: list[dict[str, float]] = field(default_factory=list)
    val_metrics: dict[str, float] = field(default_factory=dict)


# --- data --------------------------------------------------------------------------------------


def normalize_question(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


@lru_cache(maxsize=1)
def eval_questions() -> frozenset[str]:
    """Normalized texts of every question an evaluation may use."""
    from tasks import datasets

    texts: set[str] = set()
    for result in (datasets.load_gsm8k("test"), datasets.load_math500(), datasets.load_arith(ARITH_EVAL_PROBLEMS, split="test")):
        texts.update(normalize_question(p.question) for p in result.problems)
    for split in ("gsm8k", "math"):
        path = datasets.data_dir() / "processbench" / f"{split}.json"
        texts.update(normalize_question(row["problem"]) for row in json.loads(path.read_text()))
    return frozenset(texts)


def is_eval_problem(dataset: str, split: str, question: str) -> bool:
    return split == "test" or dataset == "math500" or normalize_question(question) in eval_questions()


def load_examples(store: Store, config: TrainConfig) -> tuple[list[Example], int]:
    """Training examples from fully labelled solutions, minus evaluation problems.

    Returns the examples and the number of problems excluded as evaluation problems.
    """
    rows = store.query(internal_sql("training_steps")).as_dicts()
    by_solution: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if config.datasets and row["dataset"] not in config.datasets:
            continue
        by_solution.setdefault(row["solution_id"], []).append(row)
    examples, excluded = [], set()
    for steps in by_solution.values():
        first = steps[0]
        if is_eval_problem(first["dataset"], first["split"], first["question"]):
            excluded.add(first["problem_id"])
            continue
        texts = tuple(s["text"] for s in steps)
        if config.kind == "orm":
            targets: tuple[float | None, ...] = (float(first["solution_correct"]),)
        else:
            targets = _step_targets(steps, config)
        examples.append(Example(first["problem_id"], first["question"], texts, targets))
    return examples, len(excluded)


def _step_targets(steps: list[dict[str, Any]], config: TrainConfig) -> tuple[float | None, ...]:
    targets: list[float | None] = []
    seen_error = False
    for s in steps:
        if seen_error and config.after_first_error == "drop":
            targets.append(None)
            continue
        targets.append(float(s["he"]) if config.target == "he" else float(s["se"]))
        seen_error = seen_error or not s["he"]
    return tuple(targets)


def split_by_problem(examples: list[Example], val_fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """Deterministic problem-level split: all solutions of a problem land on the same side."""
    problems = sorted({e.problem_id for e in examples})
    if len(problems) < 2:
        raise TrainingError(f"need labelled solutions of at least 2 problems to split train/validation, found {len(problems)}")

    def rank(problem_id: str) -> str:
        return hashlib.sha256(f"{seed}\x1f{problem_id}".encode()).hexdigest()

    ordered = sorted(problems, key=rank)
    val_count = min(len(problems) - 1, max(1, round(val_fraction * len(problems))))
    val = set(ordered[:val_count])
    return [e for e in examples if e.problem_id not in val], [e for e in examples if e.problem_id in val]


# --- encoding ------------------------------------------------------------------------------------


class StepTagCodec:
    """Turns (question, steps) into token ids and the positions where step scores are read."""

    def __init__(self, tokenizer: Any, max_length: int, tag_every_step: bool = True):
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.tag_every_step = tag_every_step
        self.tag_ids = self._ids(STEP_TAG)
        self.newline_ids = self._ids("\n")
        self.good_id, self.bad_id = self._single(GOOD), self._single(BAD)

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def _single(self, text: str) -> int:
        ids = self._ids(text)
        if len(ids) != 1:
            raise TrainingError(f"candidate token {text!r} is {len(ids)} tokens in this tokenizer; need 1")
        return ids[0]

    def encode(self, question: str, steps: tuple[str, ...]) -> tuple[list[int], list[int]]:
        """Token ids and the index of each scored tag (one per step; ORM: one for the solution).

        Steps that would not fit in ``max_length`` are cut whole, so fewer positions may return.
        """
        prompt = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
        )
        ids = self._ids(prompt)
        positions: list[int] = []
        for i, step in enumerate(steps):
            last = i == len(steps) - 1
            piece = self._ids(step.strip())
            tagged = self.tag_every_step or last
            extra = len(self.tag_ids) if tagged else 0
            if len(ids) + len(piece) + extra + len(self.newline_ids) > self.max_length:
                break
            ids += piece
            if tagged:
                ids += self.tag_ids
                positions.append(len(ids) - 1)
            ids += self.newline_ids
        return ids, positions


def _batch(codec: StepTagCodec, examples: list[Example], device: str):
    """Right-padded input ids, attention mask, and (row, position, target) of every scored tag."""
    import torch

    encoded = [codec.encode(e.question, e.steps) for e in examples]
    width = max(len(ids) for ids, _ in encoded)
    pad = codec.tokenizer.pad_token_id if codec.tokenizer.pad_token_id is not None else codec.tokenizer.eos_token_id
    input_ids = torch.full((len(encoded), width), pad, dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    rows, cols, targets = [], [], []
    for r, ((ids, positions), example) in enumerate(zip(encoded, examples)):
        input_ids[r, : len(ids)] = torch.tensor(ids)
        mask[r, : len(ids)] = 1
        for pos, target in zip(positions, example.targets):  # an ORM has one tag and one target
            if target is not None:
                rows.append(r)
                cols.append(pos)
                targets.append(target)
    return (input_ids.to(device), mask.to(device), torch.tensor(rows, device=device),
            torch.tensor(cols, device=device), torch.tensor(targets, dtype=torch.float32, device=device))


def _tag_log_probs(model: Any, codec: StepTagCodec, input_ids, mask, rows, cols):
    """log p(+), log p(-) at the scored tags, from one forward pass over the batch."""
    import torch

    # Project only the tag positions onto the vocabulary: the full logits tensor (tokens x 49k
    # vocabulary for SmolLM2) would cost more memory than the rest of the pass.
    hidden = model.base_model(input_ids=input_ids, attention_mask=mask).last_hidden_state[rows, cols]
    pair = model.get_output_embeddings()(hidden)[:, [codec.good_id, codec.bad_id]].float()
    return torch.log_softmax(pair, dim=-1).unbind(-1)


def step_loss(log_good, log_bad, targets):
    """Cross-entropy against a (possibly soft) target probability of "good"."""
    return -(targets * log_good + (1 - targets) * log_bad).mean()


# --- training ------------------------------------------------------------------------------------


def _quiet_transformers() -> None:
    """No per-load weight progress bars: prmf draws its own progress for long work."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def evaluate(model: Any, codec: StepTagCodec, examples: list[Example], batch_size: int, device: str) -> dict[str, float]:
    """Validation loss and accuracy (score > 0.5 vs target > 0.5) over the scored steps."""
    import torch

    model.eval()
    total = correct = 0
    loss_sum = 0.0
    with torch.no_grad():
        for start in range(0, len(examples), batch_size):
            input_ids, mask, rows, cols, targets = _batch(codec, examples[start : start + batch_size], device)
            if not len(targets):
                continue
            log_good, log_bad = _tag_log_probs(model, codec, input_ids, mask, rows, cols)
            loss_sum += float(step_loss(log_good, log_bad, targets)) * len(targets)
            correct += int(((log_good.exp() > 0.5) == (targets > 0.5)).sum())
            total += len(targets)
    model.train()
    if not total:
        raise TrainingError("the validation problems have no scored steps")
    return {"val_loss": loss_sum / total, "val_accuracy": correct / total, "val_steps": float(total)}


def train_reward_model(store: Store, config: TrainConfig, run_id: str | None = None) -> TrainResult:
    """Fine-tune the base model on the store's labels, save the best checkpoint, register it.

    The store is released while the model trains, so label runs can keep storing meanwhile.
    """
    examples, excluded = load_examples(store, config)
    if not examples:
        raise TrainingError(f"{store.path}: no fully labelled solutions to train on (run `prmf label` first)")
    train, val = split_by_problem(examples, config.val_fraction, config.seed)
    snapshot = label_snapshot(store)
    snapshot.update(problems=len({e.problem_id for e in examples}), train_solutions=len(train), val_solutions=len(val),
                    excluded_eval_problems=excluded)
    base = resolve_model(config.base_model)
    model_id = _model_id(config)
    with store.released():
        final_dir, history, val_metrics = _fit(base.path, train, val, config, model_id)
    hyper = {k: v for k, v in config.model_dump(mode="json").items() if k not in ("db", "models_dir")}
    with store.transaction():
        store.insert_rows("prm_models", [{
            "model_id": model_id, "kind": config.kind, "base_model": base.identity,
            "target": config.target if config.kind == "prm" else "correct", "path": str(final_dir.resolve()),
            "data_snapshot": to_json(snapshot), "hyperparameters": to_json(hyper), "val_metrics": to_json(val_metrics),
            "run_id": run_id,
        }])
    return TrainResult(model_id, final_dir, len(train), len(val), excluded, history, val_metrics)


def _fit(base_path: Path, train: list[Example], val: list[Example], config: TrainConfig,
         model_id: str) -> tuple[Path, list[dict[str, float]], dict[str, float]]:
    """The training loop: keeps the best-validation epoch, returns its folder, history, metrics."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _quiet_transformers()
    device = _device()
    torch.manual_seed(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(base_path)
    # bf16 on GPU; fp32 on CPU, where bf16 matmuls are slow and the model is small.
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(base_path, dtype=dtype).to(device)
    model.train()
    codec = StepTagCodec(tokenizer, config.max_length, tag_every_step=config.kind == "prm")
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    warmup = max(1, total_steps // 10)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup))

    history = [{"step": 0, **evaluate(model, codec, val, config.batch_size, device)}]
    best = history[0]["val_loss"]
    final_dir = config.models_dir / model_id
    _remove_abandoned_staging(config.models_dir)
    # Renamed into place only when complete; the pid tells a later run whether it was abandoned.
    staging = config.models_dir / f".{model_id}.{os.getpid()}.partial"
    shuffler = random.Random(config.seed)
    step = 0
    started = time.perf_counter()
    with progress(f"training {config.kind}", total_steps) as advance:
        for _ in range(config.epochs):
            order = train[:]
            shuffler.shuffle(order)
            for start in range(0, len(order), config.batch_size):
                input_ids, mask, rows, cols, targets = _batch(codec, order[start : start + config.batch_size], device)
                step += 1
                advance(1)
                if not len(targets):
                    continue
                log_good, log_bad = _tag_log_probs(model, codec, input_ids, mask, rows, cols)
                loss = step_loss(log_good, log_bad, targets)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
            metrics = {"step": step, "train_loss": float(loss.detach()), **evaluate(model, codec, val, config.batch_size, device)}
            history.append(metrics)
            if metrics["val_loss"] < best:  # keep the best epoch's weights
                best = metrics["val_loss"]
                _save(model, tokenizer, config, staging)
    if not staging.exists():  # no epoch beat the base model: keep the last one, say so in metrics
        _save(model, tokenizer, config, staging)
    if final_dir.exists():
        shutil.rmtree(final_dir)
    staging.rename(final_dir)
    best_metrics = min(history[1:], key=lambda h: h["val_loss"])
    val_metrics = {**best_metrics, "base_val_loss": history[0]["val_loss"], "base_val_accuracy": history[0]["val_accuracy"],
                   "train_seconds": time.perf_counter() - started}
    return final_dir, history, val_metrics


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


def _save(model: Any, tokenizer: Any, config: TrainConfig, folder: Path) -> None:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    meta = {"kind": config.kind, "step_tag": STEP_TAG, "good_token": GOOD, "bad_token": BAD,
            "target": config.target, "max_length": config.max_length, "format": "chat user turn = question"}
    (folder / PRM_METADATA).write_text(json.dumps(meta, indent=1))


# --- scoring -------------------------------------------------------------------------------------


class RewardModel:
    """A trained PRM/ORM checkpoint: ``score`` gives per-step probabilities of "good"."""

    def __init__(self, path: Path | str, device: str | None = None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.path = Path(path)
        meta_path = self.path / PRM_METADATA
        if not meta_path.is_file():
            raise TrainingError(f"{self.path}: not a prm-factory reward model (no {PRM_METADATA})")
        self.meta = json.loads(meta_path.read_text())
        _quiet_transformers()
        self.device = device or _device()
        dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        self.model = AutoModelForCausalLM.from_pretrained(self.path, dtype=dtype).to(self.device).eval()
        self.codec = StepTagCodec(self.tokenizer, self.meta["max_length"], tag_every_step=self.meta["kind"] == "prm")

    def score(self, question: str, solutions: list[list[str]], batch_size: int = 8) -> list[list[float]]:
        """Per-step scores for each solution of one question (ORM: one score each)."""
        return self.score_many([(question, steps) for steps in solutions], batch_size)

    def score_many(self, items: list[tuple[str, list[str]]], batch_size: int = 8,
                   advance: Callable[[int], None] | None = None) -> list[list[float]]:
        """Per-step scores for (question, steps) pairs, one forward pass per batch of solutions.

        Each step's score is p("+") at its tag. Steps beyond the model's ``max_length`` are not
        scored (that list is shorter). ``advance(k)`` is called after each batch of k solutions.
        """
        import torch

        results: list[list[float]] = []
        for start in range(0, len(items), batch_size):
            chunk = [Example("", question, tuple(steps), tuple([1.0] * len(steps)))
                     for question, steps in items[start : start + batch_size]]
            input_ids, mask, rows, cols, _ = _batch(self.codec, chunk, self.device)
            with torch.no_grad():
                log_good, _ = _tag_log_probs(self.model, self.codec, input_ids, mask, rows, cols)
            per_row: list[list[float]] = [[] for _ in chunk]
            for r, p in zip(rows.tolist(), log_good.exp().tolist()):
                per_row[r].append(p)
            results.extend(per_row)
            if advance is not None:
                advance(len(chunk))
        return results


def result_dict(result: TrainResult) -> dict[str, Any]:
    data = asdict(result)
    data["path"] = str(result.path)
    return data


@task(name="train-reward-model", cache_policy=NO_CACHE, task_run_name="train-{config.kind}-{config.target}")
def train_task(config: TrainConfig, run_id: str | None = None) -> dict[str, Any]:
    # No retries: a failed training leaves only a staging folder, never a registered model.
    with Store(config.db) as store:
        return result_dict(train_reward_model(store, config, run_id))
