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

Length. Training cuts a solution on the right at ``TrainConfig.max_length`` (its later steps carry
no loss; the cut solutions are counted in the metrics). Scoring (:class:`RewardModel`) uses the
model's whole context window and, when a solution still does not fit, keeps the question and the
*final* steps, dropping the earliest ones, so the final step is always scored
(:class:`SolutionScores`).

Checkpoint. The epoch with the best validation loss is saved if it beats the base model;
otherwise the last epoch is. ``val_metrics`` are the saved epoch's, with ``saved_epoch`` and
``saved_because`` saying which and why.

Data hygiene. Train/validation is split by problem, never by step. Evaluation problems are
never trained on: any problem of a test or validation split or of MATH500, any problem whose
question text matches a GSM8K-test, MATH500, ProcessBench, arith-test or arith-validation question
(:func:`eval_questions`), and any question of an evaluation pool in the store
(:func:`evaluation_pool_questions`: the validation pools that decide promotion included),
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
ARITH_EVAL_PROBLEMS = 1000  # the arith test and validation problems any evaluation may use
PRM_METADATA = "prm.json"


class TrainingError(RuntimeError):
    """Training cannot start or finish (no labels, too few problems, bad base model)."""


@dataclass(frozen=True)
class Example:
    problem_id: str
    question: str
    steps: tuple[str, ...]
    targets: tuple[float | None, ...]  # one per step; None = no loss on this step


@dataclass(frozen=True)
class SolutionScores:
    """A reward model's scores of one solution.

    ``step_scores`` has one entry per step (an ORM: one entry, the solution's score); ``None``
    marks a leading step dropped because the solution did not fit in the scoring context. The
    final step is always scored. ``truncated``: steps were dropped or the final step was cut.
    """

    step_scores: tuple[float | None, ...]
    truncated: bool = False

    @property
    def scored(self) -> tuple[float, ...]:
        """The real scores, in step order (the None entries left out)."""
        return tuple(s for s in self.step_scores if s is not None)

    @property
    def last(self) -> float | None:
        """The final step's score (an ORM: the solution's); None only for a solution without steps."""
        return self.step_scores[-1] if self.step_scores else None


@dataclass
class TrainResult:
    model_id: str
    path: Path
    train_examples: int
    val_examples: int
    excluded_problems: int
    history: list[dict[str, float]] = field(default_factory=list)
    val_metrics: dict[str, Any] = field(default_factory=dict)


# --- data --------------------------------------------------------------------------------------


def normalize_question(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


@lru_cache(maxsize=1)
def eval_questions() -> frozenset[str]:
    """Normalized texts of every question an evaluation may use."""
    from tasks import datasets

    texts: set[str] = set()
    for result in (datasets.load_gsm8k("test"), datasets.load_math500(),
                   datasets.load_arith(ARITH_EVAL_PROBLEMS, split="test"),
                   datasets.load_arith(ARITH_EVAL_PROBLEMS, split="validation")):
        texts.update(normalize_question(p.question) for p in result.problems)
    for split in ("gsm8k", "math"):
        path = datasets.data_dir() / "processbench" / f"{split}.json"
        texts.update(normalize_question(row["problem"]) for row in json.loads(path.read_text()))
    return frozenset(texts)


def evaluation_pool_questions(store: Store) -> frozenset[str]:
    """Normalized texts of every question in the store's evaluation pools (test and validation):
    a user's validation set drawn from a train split is protected as well."""
    return frozenset(normalize_question(q) for (q,) in store.query(internal_sql("evaluation_pool_questions")).rows)


def is_eval_problem(dataset: str, split: str, question: str, pooled: frozenset[str] = frozenset()) -> bool:
    text = normalize_question(question)
    return split in ("test", "validation") or dataset == "math500" or text in eval_questions() or text in pooled


def load_examples(store: Store, config: TrainConfig) -> tuple[list[Example], int]:
    """Training examples from fully labelled solutions, minus evaluation problems.

    Returns the examples and the number of problems excluded as evaluation problems.
    """
    pooled = evaluation_pool_questions(store)
    rows = store.query(internal_sql("training_steps")).as_dicts()
    by_solution: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if config.datasets and row["dataset"] not in config.datasets:
            continue
        by_solution.setdefault(row["solution_id"], []).append(row)
    examples, excluded = [], set()
    for steps in by_solution.values():
        first = steps[0]
        if is_eval_problem(first["dataset"], first["split"], first["question"], pooled):
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

    def _prompt(self, question: str) -> list[int]:
        prompt = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
        )
        return self._ids(prompt)

    def _pieces(self, steps: tuple[str, ...] | list[str]) -> list[tuple[list[int], bool]]:
        """Each step's token ids and whether it carries a tag."""
        return [(self._ids(step.strip()), self.tag_every_step or i == len(steps) - 1) for i, step in enumerate(steps)]

    def _cost(self, piece: list[int], tagged: bool) -> int:
        return len(piece) + (len(self.tag_ids) if tagged else 0) + len(self.newline_ids)

    def _append(self, ids: list[int], positions: list[int], piece: list[int], tagged: bool) -> None:
        ids += piece
        if tagged:
            ids += self.tag_ids
            positions.append(len(ids) - 1)
        ids += self.newline_ids

    def encode(self, question: str, steps: tuple[str, ...]) -> tuple[list[int], list[int]]:
        """Training encoding: token ids and the index of each scored tag (one per step; ORM: one
        for the solution).

        Steps that would not fit in ``max_length`` are cut whole from the right, so fewer
        positions may return (see :meth:`cut`).
        """
        ids, positions = self._prompt(question), []
        for piece, tagged in self._pieces(steps):
            if len(ids) + self._cost(piece, tagged) > self.max_length:
                break
            self._append(ids, positions, piece, tagged)
        return ids, positions

    def cut(self, question: str, steps: tuple[str, ...]) -> bool:
        """Whether :meth:`encode` cuts steps of this solution (it does not fit in ``max_length``)."""
        return len(self._prompt(question)) + sum(self._cost(*p) for p in self._pieces(steps)) > self.max_length

    def encode_tail(self, question: str, steps: tuple[str, ...] | list[str]) -> tuple[list[int], list[int], int, bool]:
        """Scoring encoding: the chat prompt and the *final* steps that fit in ``max_length``.

        Returns the token ids, the scored tag positions (one per kept step; ORM: one), the index
        of the first kept step, and whether anything was dropped. The earliest steps are dropped
        whole; when even the final step alone does not fit, its tokens are cut from the left so
        that its tag still fits. Raises TrainingError when the prompt leaves no room for a step.
        """
        ids, positions = self._prompt(question), []
        pieces = self._pieces(steps)
        room = self.max_length - len(ids)
        first, used = len(pieces), 0
        while first > 0 and used + self._cost(*pieces[first - 1]) <= room:
            first -= 1
            used += self._cost(*pieces[first])
        truncated = first > 0
        if first == len(pieces) and pieces:  # not even the final step fits: keep its last tokens
            keep = room - len(self.tag_ids) - len(self.newline_ids)
            if keep < 1:
                raise TrainingError(f"the question takes {len(ids)} tokens of the {self.max_length}-token scoring "
                                    "context, leaving no room for a step")
            first -= 1
            pieces[first] = (pieces[first][0][-keep:], True)
        for piece, tagged in pieces[first:]:
            self._append(ids, positions, piece, tagged)
        return ids, positions, first, truncated


def _pad(codec: StepTagCodec, encoded: list[tuple[list[int], list[int]]],
         targets: list[tuple[float | None, ...]], device: str):
    """Right-padded input ids, attention mask, and (row, position, target) of every scored tag
    (a position's target None: not scored)."""
    import torch

    width = max(len(ids) for ids, _ in encoded)
    pad = codec.tokenizer.pad_token_id if codec.tokenizer.pad_token_id is not None else codec.tokenizer.eos_token_id
    input_ids = torch.full((len(encoded), width), pad, dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    rows, cols, values = [], [], []
    for r, ((ids, positions), row_targets) in enumerate(zip(encoded, targets)):
        input_ids[r, : len(ids)] = torch.tensor(ids)
        mask[r, : len(ids)] = 1
        for pos, target in zip(positions, row_targets):  # an ORM has one tag and one target
            if target is not None:
                rows.append(r)
                cols.append(pos)
                values.append(target)
    return (input_ids.to(device), mask.to(device), torch.tensor(rows, dtype=torch.long, device=device),
            torch.tensor(cols, dtype=torch.long, device=device),
            torch.tensor(values, dtype=torch.float32, device=device))


def _batch(codec: StepTagCodec, examples: list[Example], device: str):
    """Training batch: right-padded input ids, attention mask, and (row, position, target) of
    every scored tag (right-cut encoding)."""
    return _pad(codec, [codec.encode(e.question, e.steps) for e in examples], [e.targets for e in examples], device)


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
         model_id: str) -> tuple[Path, list[dict[str, float]], dict[str, Any]]:
    """The training loop: saves the best-validation epoch if it beats the base model, else the
    last epoch; returns the folder, the history, and the saved epoch's metrics."""
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
    truncated = {"train_truncated_solutions": sum(codec.cut(e.question, e.steps) for e in train),
                 "val_truncated_solutions": sum(codec.cut(e.question, e.steps) for e in val)}
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    warmup = max(1, total_steps // 10)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup))

    history = [{"step": 0, **evaluate(model, codec, val, config.batch_size, device)}]
    best = history[0]["val_loss"]
    saved: tuple[int, str] | None = None  # (history index = 1-based epoch, reason)
    final_dir = config.models_dir / model_id
    _remove_abandoned_staging(config.models_dir)
    # Renamed into place only when complete; the pid tells a later run whether it was abandoned.
    staging = config.models_dir / f".{model_id}.{os.getpid()}.partial"
    shuffler = random.Random(config.seed)
    step = 0
    started = time.perf_counter()
    with progress(f"training {config.kind}", total_steps) as advance:
        for epoch in range(1, config.epochs + 1):
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
                saved = (epoch, "best validation loss")
    if saved is None:  # no epoch beat the base model: keep the last one, say so in metrics
        _save(model, tokenizer, config, staging)
        saved = (config.epochs, "last epoch: no epoch beat the base model")
    if final_dir.exists():
        shutil.rmtree(final_dir)
    staging.rename(final_dir)
    val_metrics = {**history[saved[0]], "saved_epoch": saved[0], "saved_because": saved[1],
                   "base_val_loss": history[0]["val_loss"], "base_val_accuracy": history[0]["val_accuracy"],
                   "train_seconds": time.perf_counter() - started, **truncated}
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
    """A trained PRM/ORM checkpoint: ``score_many`` gives per-step probabilities of "good".

    ``max_length``: the scoring context in tokens; by default the model's own context window
    (``max_position_embeddings``; the trained ``max_length`` if the config has none).
    """

    def __init__(self, path: Path | str, device: str | None = None, max_length: int | None = None):
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
        if max_length is None:
            max_length = getattr(self.model.config, "max_position_embeddings", None) or self.meta["max_length"]
        elif max_length < 1:
            raise TrainingError(f"max_length must be a positive number of tokens, got {max_length}")
        self.max_length = int(max_length)
        self.codec = StepTagCodec(self.tokenizer, self.max_length, tag_every_step=self.meta["kind"] == "prm")

    def score(self, question: str, solutions: list[list[str]], batch_size: int = 8) -> list[SolutionScores]:
        """Scores of each solution of one question (see :meth:`score_many`)."""
        return self.score_many([(question, steps) for steps in solutions], batch_size)

    def score_many(self, items: list[tuple[str, list[str]]], batch_size: int = 8,
                   advance: Callable[[int], None] | None = None) -> list[SolutionScores]:
        """Scores of (question, steps) pairs, one forward pass per batch of solutions.

        Each step's score is p("+") at its tag; a PRM gives one entry per step, an ORM one per
        solution. A solution longer than ``max_length`` keeps the question and its final steps:
        the earliest steps are dropped whole (their entries are None) and, if the final step alone
        does not fit, its start is cut; it is then ``truncated``. The final step is always scored.
        ``advance(k)`` is called after each batch of k solutions.
        """
        import torch

        results: list[SolutionScores] = []
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            encoded = [self.codec.encode_tail(question, steps) for question, steps in chunk]
            input_ids, mask, rows, cols, _ = _pad(self.codec, [(ids, positions) for ids, positions, _, _ in encoded],
                                                  [(1.0,) * len(positions) for _, positions, _, _ in encoded],
                                                  self.device)
            with torch.no_grad():
                log_good, _ = _tag_log_probs(self.model, self.codec, input_ids, mask, rows, cols)
            per_row: list[list[float]] = [[] for _ in chunk]
            for r, p in zip(rows.tolist(), log_good.exp().tolist()):
                per_row[r].append(p)
            for (_, _, first, truncated), scores in zip(encoded, per_row):
                dropped = first if self.codec.tag_every_step else 0  # an ORM's one entry is always scored
                results.append(SolutionScores((None,) * dropped + tuple(scores), truncated))
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
