"""Step-tag verifiers: the PRM and the ORM, read at tag tokens of an ordinary causal LM.

Format. A solution is the chat prompt (the question as the user turn) followed by its steps
in the assistant turn, each step followed by the tag `` ки`` and a newline. The model's output
at a tag's last token is read over two candidate tokens, ``+`` (good) and ``-`` (bad); the
step's score is ``softmax([logit(+), logit(-)])[0]``. Any causal LM works as the base; nothing
is added to the network, so a trained verifier is an ordinary checkpoint plus ``prm.json``.
A PRM tags every step; an ORM tags only the final one (one score per solution).

Length. Training cuts a solution on the right at its ``max_length`` (:meth:`StepTagCodec.encode`).
Scoring uses the model's whole context window and, when a solution still does not fit, keeps the
question and the *final* steps, dropping the earliest ones, so the final step is always scored
(:meth:`StepTagCodec.encode_tail`).

Speed. Tokenisation is one fast-tokenizer batch call per chunk of solutions (each question's
prompt rendered once), done by a worker thread for the next chunk while the model scores this
one. Solutions are sorted by length and batched by a padded-token budget, so padding and new
tensor shapes stay few (``prmf bench score``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tasks.verifiers.base import Item, ScoringSettings, SolutionScores, VerifierError, register_verifier

STEP_TAG = " ки"
GOOD, BAD = "+", "-"
SCORING_CHUNK = 2048  # solutions tokenised at a time: bounds memory, and the worker stays one chunk ahead

Piece = tuple[list[int], bool]  # a step's token ids and whether it carries a tag
Tokenized = tuple[list[int], list[Piece]]  # (prompt ids, pieces)


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def quiet_transformers() -> None:
    """No per-load weight progress bars: prmf draws its own progress for long work."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


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

    def _ids_many(self, texts: list[str]) -> list[list[int]]:
        # One batch call: a fast tokenizer encodes the list in parallel, outside the GIL.
        return self.tokenizer(texts, add_special_tokens=False).input_ids if texts else []

    def _single(self, text: str) -> int:
        ids = self._ids(text)
        if len(ids) != 1:
            raise VerifierError(f"candidate token {text!r} is {len(ids)} tokens in this tokenizer; need 1")
        return ids[0]

    def _prompt_text(self, question: str) -> str:
        return self.tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
        )

    def tokenize_many(self, items: Sequence[Item]) -> list[Tokenized]:
        """Prompt ids and step pieces of each item: each distinct question rendered once, all
        prompts in one batch call and all steps in another."""
        questions = list(dict.fromkeys(question for question, _ in items))
        prompts = dict(zip(questions, self._ids_many([self._prompt_text(q) for q in questions])))
        flat = self._ids_many([step.strip() for _, steps in items for step in steps])
        out, k = [], 0
        for question, steps in items:
            last = len(steps) - 1
            out.append((prompts[question], [(flat[k + i], self.tag_every_step or i == last) for i in range(len(steps))]))
            k += len(steps)
        return out

    def _cost(self, piece: list[int], tagged: bool) -> int:
        return len(piece) + (len(self.tag_ids) if tagged else 0) + len(self.newline_ids)

    def _append(self, ids: list[int], positions: list[int], piece: list[int], tagged: bool) -> None:
        ids += piece
        if tagged:
            ids += self.tag_ids
            positions.append(len(ids) - 1)
        ids += self.newline_ids

    # --- training encoding: cut on the right ---------------------------------------------------

    def encode_tokenized(self, tokenized: Tokenized) -> tuple[list[int], list[int]]:
        prompt, pieces = tokenized
        ids, positions = list(prompt), []
        for piece, tagged in pieces:
            if len(ids) + self._cost(piece, tagged) > self.max_length:
                break
            self._append(ids, positions, piece, tagged)
        return ids, positions

    def encode_many(self, items: Sequence[Item]) -> list[tuple[list[int], list[int]]]:
        """Training encoding of each item (see :meth:`encode`)."""
        return [self.encode_tokenized(t) for t in self.tokenize_many(items)]

    def encode(self, question: str, steps: Sequence[str]) -> tuple[list[int], list[int]]:
        """Training encoding: token ids and the index of each scored tag (one per step; ORM: one
        for the solution).

        Steps that would not fit in ``max_length`` are cut whole from the right, so fewer
        positions may return (see :meth:`cut`).
        """
        return self.encode_many([(question, steps)])[0]

    def cut_tokenized(self, tokenized: Tokenized) -> bool:
        prompt, pieces = tokenized
        return len(prompt) + sum(self._cost(*p) for p in pieces) > self.max_length

    def cut_many(self, items: Sequence[Item]) -> list[bool]:
        """Whether :meth:`encode` cuts steps of each item (it does not fit in ``max_length``)."""
        return [self.cut_tokenized(t) for t in self.tokenize_many(items)]

    def cut(self, question: str, steps: Sequence[str]) -> bool:
        return self.cut_many([(question, steps)])[0]

    # --- scoring encoding: keep the final steps -------------------------------------------------

    def encode_tail_tokenized(self, tokenized: Tokenized) -> tuple[list[int], list[int], int, bool]:
        prompt, pieces = tokenized
        ids, positions = list(prompt), []
        pieces = list(pieces)
        room = self.max_length - len(ids)
        first, used = len(pieces), 0
        while first > 0 and used + self._cost(*pieces[first - 1]) <= room:
            first -= 1
            used += self._cost(*pieces[first])
        truncated = first > 0
        if first == len(pieces) and pieces:  # not even the final step fits: keep its last tokens
            keep = room - len(self.tag_ids) - len(self.newline_ids)
            if keep < 1:
                raise VerifierError(f"the question takes {len(ids)} tokens of the {self.max_length}-token scoring "
                                    "context, leaving no room for a step")
            first -= 1
            pieces[first] = (pieces[first][0][-keep:], True)
        for piece, tagged in pieces[first:]:
            self._append(ids, positions, piece, tagged)
        return ids, positions, first, truncated

    def encode_tail_many(self, items: Sequence[Item]) -> list[tuple[list[int], list[int], int, bool]]:
        return [self.encode_tail_tokenized(t) for t in self.tokenize_many(items)]

    def encode_tail(self, question: str, steps: Sequence[str]) -> tuple[list[int], list[int], int, bool]:
        """Scoring encoding: the chat prompt and the *final* steps that fit in ``max_length``.

        Returns the token ids, the scored tag positions (one per kept step; ORM: one), the index
        of the first kept step, and whether anything was dropped. The earliest steps are dropped
        whole; when even the final step alone does not fit, its tokens are cut from the left so
        that its tag still fits. Raises VerifierError when the prompt leaves no room for a step.
        """
        return self.encode_tail_many([(question, steps)])[0]


def pad_batch(codec: StepTagCodec, encoded: Sequence[tuple[list[int], list[int]]],
              targets: Sequence[Sequence[float | None]], device: str):
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


def transformer_body(model: Any) -> Any:
    """The decoder stack (no LM head) of a causal LM, or of the LM a peft adapter wraps."""
    lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    return lm.base_model


def tag_log_probs(model: Any, codec: StepTagCodec, input_ids, mask, rows, cols):
    """log p(+), log p(-) at the scored tags, from one forward pass over the batch (fp32)."""
    import torch

    # Project only the tag positions onto the vocabulary: the full logits tensor (tokens x 49k
    # vocabulary for SmolLM2) would cost more memory than the rest of the pass.
    hidden = transformer_body(model)(input_ids=input_ids, attention_mask=mask).last_hidden_state[rows, cols]
    pair = model.get_output_embeddings()(hidden)[:, [codec.good_id, codec.bad_id]].float()
    return torch.log_softmax(pair, dim=-1).unbind(-1)


def token_budget_batches(lengths: Sequence[int], batch_size: int, batch_tokens: int,
                         length_sorted: bool = True) -> list[list[int]]:
    """Indices grouped into batches of at most ``batch_size`` items and ``batch_tokens`` padded
    tokens (items x longest), shortest first (``length_sorted``) or in input order; an item longer
    than the budget goes alone."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i]) if length_sorted else range(len(lengths))
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        if current and (len(current) >= batch_size or (len(current) + 1) * max(longest, lengths[i]) > batch_tokens):
            batches.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, lengths[i])
    if current:
        batches.append(current)
    return batches


@register_verifier("prm", "orm")
class StepTagVerifier:
    """A trained step-tag PRM (a score per step) or ORM (one score per solution).

    ``settings.max_length``: the scoring context in tokens; by default the model's own context
    window (``max_position_embeddings``; the trained ``max_length`` if the config has none).
    """

    def __init__(self, path: Path, meta: dict[str, Any], settings: ScoringSettings | None = None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        settings = settings or ScoringSettings()
        if settings.batch_size < 1 or settings.batch_tokens < 1:
            raise VerifierError(f"batch_size and batch_tokens must be positive, got {settings.batch_size} and "
                                f"{settings.batch_tokens}")
        self.path, self.meta, self.kind = Path(path), meta, meta["kind"]
        self.settings = settings
        quiet_transformers()
        self.device = settings.device or default_device()
        dtype = getattr(torch, settings.dtype) if settings.dtype else torch.bfloat16 if self.device == "cuda" else torch.float32
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        self.model = AutoModelForCausalLM.from_pretrained(self.path, dtype=dtype).to(self.device).eval()
        max_length = settings.max_length
        if max_length is None:
            max_length = getattr(self.model.config, "max_position_embeddings", None) or meta["max_length"]
        elif max_length < 1:
            raise VerifierError(f"max_length must be a positive number of tokens, got {max_length}")
        self.max_length = int(max_length)
        self.codec = StepTagCodec(self.tokenizer, self.max_length, tag_every_step=self.kind == "prm")

    def score(self, question: str, solutions: Sequence[Sequence[str]]) -> list[SolutionScores]:
        """Scores of each solution of one question (see :meth:`score_many`)."""
        return self.score_many([(question, steps) for steps in solutions])

    def score_many(self, items: Sequence[Item], advance: Callable[[int], None] | None = None) -> list[SolutionScores]:
        """Scores of (question, steps) pairs, in input order.

        Each step's score is p("+") at its tag; a PRM gives one entry per step, an ORM one per
        solution. A solution longer than ``max_length`` keeps the question and its final steps:
        the earliest steps are dropped whole (their entries are None) and, if the final step alone
        does not fit, its start is cut; it is then ``truncated``. The final step is always scored.
        ``advance(k)`` is called after each batch of k solutions.
        """
        results: list[SolutionScores | None] = [None] * len(items)
        starts = list(range(0, len(items), SCORING_CHUNK))
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prmf-tokenize") as worker:
            pending = worker.submit(self.codec.encode_tail_many, items[: SCORING_CHUNK]) if starts else None
            for n, start in enumerate(starts):
                encoded = pending.result()
                if n + 1 < len(starts):  # tokenise the next chunk while this one is scored
                    nxt = starts[n + 1]
                    pending = worker.submit(self.codec.encode_tail_many, items[nxt : nxt + SCORING_CHUNK])
                for batch in token_budget_batches([len(e[0]) for e in encoded], self.settings.batch_size,
                                                  self.settings.batch_tokens, self.settings.length_sorted):
                    for i, scores in zip(batch, self._score_encoded([encoded[i] for i in batch])):
                        results[start + i] = scores
                    if advance is not None:
                        advance(len(batch))
        return results  # type: ignore[return-value]  # every slot is filled above

    def _score_encoded(self, encoded: list[tuple[list[int], list[int], int, bool]]) -> list[SolutionScores]:
        import torch

        input_ids, mask, rows, cols, _ = pad_batch(self.codec, [(ids, positions) for ids, positions, _, _ in encoded],
                                                   [(1.0,) * len(positions) for _, positions, _, _ in encoded],
                                                   self.device)
        with torch.no_grad():
            log_good, _ = tag_log_probs(self.model, self.codec, input_ids, mask, rows, cols)
        per_row: list[list[float]] = [[] for _ in encoded]
        for r, p in zip(rows.tolist(), log_good.exp().tolist()):
            per_row[r].append(p)
        out = []
        for (_, _, first, truncated), scores in zip(encoded, per_row):
            dropped = first if self.codec.tag_every_step else 0  # an ORM's one entry is always scored
            out.append(SolutionScores((None,) * dropped + tuple(scores), truncated))
        return out
