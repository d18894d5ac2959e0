"""The implicit PRM ("Free Process Rewards without Process Labels", Yuan et al. 2024; PRIME-RL/ImplicitPRM).

Method. The outcome reward of a response y is parameterised as ``r(y) = beta * log(pi_theta(y) /
pi_ref(y))``, pi_ref the frozen base model and pi_theta the trained one. Trained on solution
correctness only (:func:`ce_loss`, or :func:`dpo_loss` on (correct, incorrect) pairs), it gives
process rewards for free: ``q_t = beta * sum of log(pi_theta / pi_ref)`` over the response tokens up
to the end of step t is a Q-value, and the step reward is ``r_t = q_t - q_{t-1}`` (q_0 = 0): beta
times the summed per-token log ratios of step t's tokens.

Format. The chat prompt (the question as the user turn) and, in the assistant turn, each step
followed by a newline, as the step-tag verifiers but without tags. No end-of-turn token follows the
final step, so a prefix of a solution scores exactly as the first steps of the whole solution.

Read-outs (``prm.json``'s ``readout``, or the ``readout`` argument). Scores are log-ratio rewards,
finite floats, *not* probabilities:
  * ``step``: r_t; summed over the steps, the outcome reward r(y);
  * ``cumulative``: q_t; the final step's is r(y), the ORM read-out;
  * ``sigmoid``: sigmoid(q_t), in (0, 1). Under the CE loss sigmoid(r(y)) is the trained estimate of
    P(correct), so this is q_t on the same probability scale (the reading PRIME-RL/ImplicitPRM
    thresholds for ProcessBench). It is the one for thresholds and for the ``prod`` aggregation.

Cost. Scoring runs the trained model and the reference once each over the same tokens per
solution, batched as the step-tag verifier (length-sorted batches under a padded-token budget).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import accumulate
from pathlib import Path
from typing import Any

from tasks.verifiers.base import Item, ScoringSettings, SolutionScores, Verifier, VerifierError, register_verifier
from tasks.verifiers.step_tag import (
    SCORING_CHUNK,
    default_device,
    quiet_transformers,
    token_budget_batches,
    transformer_body,
)

STEP_SEPARATOR = "\n"
READOUTS = ("step", "cumulative", "sigmoid")
LOGIT_CHUNK = 1024  # response tokens projected onto the vocabulary at a time when scoring (bounds memory)

Tokenized = tuple[list[int], list[list[int]]]  # prompt ids, each step's ids (its text, then the separator)
Encoded = tuple[list[int], int, list[int]]  # token ids, index of the first response token, tokens per step


# --- pure functions ---------------------------------------------------------------------------


def token_log_probs(logits, tokens):
    """log p(token) under ``logits`` (..., vocab), in fp32. ``gather - logsumexp`` keeps no second
    vocabulary-sized tensor for the backward pass, as ``log_softmax`` would."""
    import torch

    logits = logits.float()
    return logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)


def per_token_log_ratios(policy_logits, ref_logits, tokens):
    """``log pi_theta(token) - log pi_ref(token)`` at each position."""
    return token_log_probs(policy_logits, tokens) - token_log_probs(ref_logits, tokens)


def _floats(values: Any) -> list[float]:
    return values.tolist() if hasattr(values, "tolist") else [float(v) for v in values]


def step_rewards(log_ratios_by_step: Sequence[Sequence[float]], beta: float) -> list[float]:
    """r_t: beta times the sum of step t's per-token log ratios (fsum: exact whatever the length)."""
    return [beta * math.fsum(_floats(step)) for step in log_ratios_by_step]


def cumulative_rewards(log_ratios_by_step: Sequence[Sequence[float]], beta: float) -> list[float]:
    """q_t = r_1 + ... + r_t."""
    return list(accumulate(step_rewards(log_ratios_by_step, beta)))


def sigmoid(x: float) -> float:
    # Two branches: exp never overflows.
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


def read_out(rewards: Sequence[float], readout: str) -> list[float]:
    """Per-step scores from the step rewards r_t (see the module docstring)."""
    if readout == "step":
        return list(rewards)
    if readout == "cumulative":
        return list(accumulate(rewards))
    if readout == "sigmoid":
        return [sigmoid(q) for q in accumulate(rewards)]
    raise VerifierError(f"unknown implicit-PRM read-out {readout!r}; known: {', '.join(READOUTS)}")


def apply_readout(step_rewards: Sequence[float | None], readout: str) -> tuple[float | None, ...]:
    """The ``readout`` of stored step rewards r_t (what ``score_many(..., readout="step")`` gives and
    ``eval_scores`` holds for an implicit PRM), as :meth:`ImplicitPRM.score_many` would have read
    them out: leading None entries (steps dropped from a solution too long for the context) stay
    None, and the running sum starts at the first scored step."""
    dropped = next((i for i, r in enumerate(step_rewards) if r is not None), len(step_rewards))
    kept = list(step_rewards[dropped:])
    if any(r is None for r in kept):
        raise VerifierError(f"step rewards {list(step_rewards)}: an unscored step after a scored one")
    return (None,) * dropped + tuple(read_out(kept, readout))  # type: ignore[arg-type]  # no None in kept


def ce_loss(logratio, label, beta: float):
    """Per-solution cross-entropy of sigmoid(beta * logratio) against the 0/1 correctness ``label``:
    ``-[l log sigmoid(x) + (1 - l) log(1 - sigmoid(x))]``, x = beta * logratio (logsigmoid: stable)."""
    import torch.nn.functional as F

    x = beta * logratio
    return -(label * F.logsigmoid(x) + (1 - label) * F.logsigmoid(-x))


def dpo_loss(logratio_w, logratio_l, beta: float):
    """Per-pair DPO loss ``-log sigmoid(beta * (logratio_w - logratio_l))``, w the correct solution."""
    import torch.nn.functional as F

    return -F.logsigmoid(beta * (logratio_w - logratio_l))


# --- tokens -----------------------------------------------------------------------------------


class ImplicitCodec:
    """(question, steps) -> token ids and each step's token span in the assistant turn."""

    def __init__(self, tokenizer: Any, max_length: int):
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.separator_ids = tokenizer(STEP_SEPARATOR, add_special_tokens=False).input_ids

    def _ids_many(self, texts: list[str]) -> list[list[int]]:
        return self.tokenizer(texts, add_special_tokens=False).input_ids if texts else []

    def _prompt_text(self, question: str) -> str:
        return self.tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
        )

    def tokenize_many(self, items: Sequence[Item]) -> list[Tokenized]:
        """Prompt ids and step ids of each item: each distinct question rendered once, all prompts
        in one batch call and all steps in another (steps tokenised alone, as at training time)."""
        questions = list(dict.fromkeys(question for question, _ in items))
        prompts = dict(zip(questions, self._ids_many([self._prompt_text(q) for q in questions])))
        if any(not p for p in prompts.values()):
            raise VerifierError("the chat prompt of a question is empty: no token predicts the first step")
        flat = self._ids_many([step.strip() for _, steps in items for step in steps])
        out, k = [], 0
        for question, steps in items:
            out.append((prompts[question], [flat[k + i] + self.separator_ids for i in range(len(steps))]))
            k += len(steps)
        return out

    def fits(self, tokenized: Tokenized) -> bool:
        prompt, steps = tokenized
        return len(prompt) + sum(len(s) for s in steps) <= self.max_length

    @staticmethod
    def encode(tokenized: Tokenized) -> Encoded:
        """The whole solution (training: a solution is trained on whole or not at all, since its
        label is about the whole response)."""
        prompt, steps = tokenized
        return [*prompt, *(t for s in steps for t in s)], len(prompt), [len(s) for s in steps]

    def encode_tail(self, tokenized: Tokenized) -> tuple[Encoded, int, bool]:
        """Scoring: the prompt and the *final* steps that fit in ``max_length`` (as the step-tag
        verifier), the index of the first kept step and whether anything was dropped. When even the
        final step does not fit, its first tokens are cut. Dropped steps' rewards are not computed,
        so ``cumulative`` then sums from the first kept step."""
        prompt, steps = tokenized
        room = self.max_length - len(prompt)
        first, used = len(steps), 0
        while first > 0 and used + len(steps[first - 1]) <= room:
            first -= 1
            used += len(steps[first])
        kept = list(steps[first:])
        if not kept and steps:  # not even the final step fits: keep its last tokens
            if room < 1:
                raise VerifierError(f"the question takes {len(prompt)} tokens of the {self.max_length}-token scoring "
                                    "context, leaving no room for a step")
            first = len(steps) - 1
            kept = [steps[-1][-room:]]
        truncated = first > 0 or (bool(steps) and len(kept[-1]) < len(steps[-1]))
        return self.encode((prompt, kept)), first, truncated


def pad_responses(encoded: Sequence[Encoded], pad_id: int, device: str):
    """Right-padded ids and mask, and (rows, cols) of every response token in row order. Right
    padding leaves the real tokens' positions and causal attention as they are alone."""
    import torch

    width = max(len(ids) for ids, _, _ in encoded)
    input_ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    rows, cols = [], []
    for r, (ids, start, _) in enumerate(encoded):
        input_ids[r, : len(ids)] = torch.tensor(ids)
        mask[r, : len(ids)] = 1
        rows += [r] * (len(ids) - start)
        cols += range(start, len(ids))
    return (input_ids.to(device), mask.to(device), torch.tensor(rows, dtype=torch.long, device=device),
            torch.tensor(cols, dtype=torch.long, device=device))


def response_hidden(model: Any, input_ids, mask, rows, cols):
    """The hidden states that predict the tokens at (rows, cols): those one position earlier."""
    return transformer_body(model)(input_ids=input_ids, attention_mask=mask).last_hidden_state[rows, cols - 1]


def response_log_probs(model: Any, input_ids, mask, rows, cols):
    """log p of each response token at (rows, cols) from one forward pass; only response positions
    are projected onto the vocabulary."""
    hidden = response_hidden(model, input_ids, mask, rows, cols)
    return token_log_probs(model.get_output_embeddings()(hidden), input_ids[rows, cols])


def pad_token_id(tokenizer: Any) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def resolve_reference(meta: dict[str, Any]):
    """The reference model recorded at training time, resolved again; it must be the same model."""
    from tasks.models import ModelError, resolve_model

    recorded = meta.get("reference") or {}
    if "setting" not in recorded:
        raise VerifierError("implicit-PRM prm.json names no reference model (reference.setting)")
    try:
        resolved = resolve_model(recorded["setting"])
    except ModelError as exc:
        raise VerifierError(f"the reference model {recorded['setting']!r} cannot be resolved: {exc}") from exc
    if recorded.get("identity") and resolved.identity != recorded["identity"]:
        raise VerifierError(f"the reference model {recorded['setting']!r} now resolves to {resolved.identity}, not "
                            f"{recorded['identity']}, the model it was trained against")
    return resolved


@register_verifier("implicit")
class ImplicitPRM:
    """A trained implicit PRM and its reference model. ``readout``: ``step`` | ``cumulative`` |
    ``sigmoid`` (default: prm.json's ``readout``, else ``step``); settable on the instance or per
    :meth:`score_many` call."""

    def __init__(self, path: Path, meta: dict[str, Any], settings: ScoringSettings | None = None,
                 readout: str | None = None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        settings = settings or ScoringSettings()
        if settings.batch_size < 1 or settings.batch_tokens < 1:
            raise VerifierError(f"batch_size and batch_tokens must be positive, got {settings.batch_size} and "
                                f"{settings.batch_tokens}")
        self.path, self.meta, self.kind = Path(path), meta, "implicit"
        self.settings = settings
        self.readout = readout or meta.get("readout", "step")
        if self.readout not in READOUTS:
            raise VerifierError(f"unknown implicit-PRM read-out {self.readout!r}; known: {', '.join(READOUTS)}")
        self.beta = float(meta["beta"])
        reference = resolve_reference(meta)
        quiet_transformers()
        self.device = settings.device or default_device()
        default_dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        dtype = getattr(torch, settings.dtype) if settings.dtype else default_dtype
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        self.model = AutoModelForCausalLM.from_pretrained(self.path, dtype=dtype).to(self.device).eval()
        self.reference = AutoModelForCausalLM.from_pretrained(reference.path, dtype=dtype).to(self.device).eval()
        vocab, ref_vocab = (m.get_output_embeddings().weight.shape[0] for m in (self.model, self.reference))
        if vocab != ref_vocab:
            raise VerifierError(f"{self.path}: vocabulary of {vocab} tokens, its reference {reference.identity} has "
                                f"{ref_vocab}: not the model it was trained from")
        max_length = settings.max_length
        if max_length is None:
            windows = [getattr(m.config, "max_position_embeddings", None) for m in (self.model, self.reference)]
            max_length = min((w for w in windows if w), default=None) or meta["max_length"]
        elif max_length < 1:
            raise VerifierError(f"max_length must be a positive number of tokens, got {max_length}")
        self.max_length = int(max_length)
        self.codec = ImplicitCodec(self.tokenizer, self.max_length)

    def score_many(self, items: Sequence[Item], advance: Callable[[int], None] | None = None,
                   readout: str | None = None) -> list[SolutionScores]:
        """Per-step scores of (question, steps) pairs, in input order (see the module docstring).

        One forward pass of the model and one of the reference per solution, in length-sorted
        batches. A solution longer than ``max_length`` is scored on its final steps (the earlier
        ones get None, ``truncated`` is set). ``advance(k)`` after each batch of k solutions.
        """
        readout = readout or self.readout
        if readout not in READOUTS:
            raise VerifierError(f"unknown implicit-PRM read-out {readout!r}; known: {', '.join(READOUTS)}")
        results: list[SolutionScores | None] = [None] * len(items)
        starts = list(range(0, len(items), SCORING_CHUNK))

        def encode(chunk: Sequence[Item]):
            return [self.codec.encode_tail(t) for t in self.codec.tokenize_many(chunk)]

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prmf-tokenize") as worker:
            pending = worker.submit(encode, items[:SCORING_CHUNK]) if starts else None
            for n, start in enumerate(starts):
                encoded = pending.result()
                if n + 1 < len(starts):  # tokenise the next chunk while this one is scored
                    nxt = starts[n + 1]
                    pending = worker.submit(encode, items[nxt : nxt + SCORING_CHUNK])
                for batch in token_budget_batches([len(e[0][0]) for e in encoded], self.settings.batch_size,
                                                  self.settings.batch_tokens, self.settings.length_sorted):
                    rewards = self._step_rewards([encoded[i][0] for i in batch])
                    for i, row in zip(batch, rewards):
                        _, first, truncated = encoded[i]
                        scores = read_out(row, readout)
                        if not all(math.isfinite(s) for s in scores):
                            raise VerifierError(f"{self.path}: non-finite implicit reward for item {start + i}: "
                                                f"{scores}")
                        results[start + i] = SolutionScores((None,) * first + tuple(scores), truncated)
                    if advance is not None:
                        advance(len(batch))
        return results  # type: ignore[return-value]  # every slot is filled above

    def _step_rewards(self, encoded: list[Encoded]) -> list[list[float]]:
        """r_t of every kept step of each row."""
        import torch

        input_ids, mask, rows, cols = pad_responses(encoded, pad_token_id(self.tokenizer), self.device)
        with torch.no_grad():
            hidden = response_hidden(self.model, input_ids, mask, rows, cols)
            ref_hidden = response_hidden(self.reference, input_ids, mask, rows, cols)
            tokens = input_ids[rows, cols]
            head, ref_head = self.model.get_output_embeddings(), self.reference.get_output_embeddings()
            ratios = torch.cat([per_token_log_ratios(head(hidden[i : i + LOGIT_CHUNK]),
                                                     ref_head(ref_hidden[i : i + LOGIT_CHUNK]),
                                                     tokens[i : i + LOGIT_CHUNK])
                                for i in range(0, len(tokens), LOGIT_CHUNK)]) if len(tokens) else tokens.float()
        flat = ratios.double().tolist()
        out, k = [], 0
        for ids, start, step_lengths in encoded:
            row = flat[k : k + len(ids) - start]
            k += len(ids) - start
            bounds = list(accumulate(step_lengths, initial=0))
            out.append(step_rewards([row[a:b] for a, b in zip(bounds, bounds[1:])], self.beta))
        return out


class ReadoutView:
    """An implicit PRM that scores with one fixed read-out, as a plain :class:`Verifier` for code
    that calls ``score_many(items, advance)`` (beam search, ProcessBench, ``prmf score``). The
    wrapped (possibly cached and shared) verifier is left as it is; ``meta["readout"]`` is the
    view's read-out, so whatever is keyed on the verifier's meta sees it."""

    def __init__(self, verifier: Any, readout: str):  # an ImplicitPRM (or another view)
        if readout not in READOUTS:
            raise VerifierError(f"unknown implicit-PRM read-out {readout!r}; known: {', '.join(READOUTS)}")
        self.verifier, self.readout = verifier, readout
        self.kind, self.path, self.max_length = verifier.kind, verifier.path, verifier.max_length
        self.meta = {**verifier.meta, "readout": readout}

    def score_many(self, items: Sequence[Item], advance: Callable[[int], None] | None = None,
                   readout: str | None = None) -> list[SolutionScores]:
        return self.verifier.score_many(items, advance, readout=readout or self.readout)


def with_readout(verifier: Verifier, readout: str) -> Verifier:
    """``verifier`` scoring with ``readout`` when it is an implicit PRM; any other verifier as it is
    (its scores are what it was trained to output and need no read-out)."""
    return ReadoutView(verifier, readout) if getattr(verifier, "kind", None) == "implicit" else verifier
