"""The step-label formats PRM trainers read, encoded and decoded in one place, so that ``prmf
export`` and ``prmf import`` agree byte for byte (a round trip gives back the same steps and
labels).

* ``trl``: TRL's stepwise supervision (``trl.experimental.prm.PRMTrainer``): ``prompt``,
  ``completions`` (one string per step) and ``labels`` (one bool per step). TRL casts each label
  with ``int()``, which would truncate a soft label to 0, so ``labels`` holds the hard label and
  ``soft_labels`` the soft value (None where there is none).
* ``math-shepherd``: ``peiyi9979/Math-Shepherd`` and distilabel's ``FormatPRM``: ``input`` is the
  question, a space, then the steps joined by newlines, each ``Step i: <text> ки``; ``label`` is
  the same text with ``+`` (correct) or ``-`` in place of each ``ки``.
* ``openrlhf``: OpenRLHF's ``ProcessRewardDataset``: ``input`` as Math-Shepherd's with a
  placeholder token after each step, ``label`` a list with one entry per placeholder: ``+``/``-``,
  or floats (the soft value). The trainer finds the placeholder by its token id, so it must be a
  single token of the trainer's tokenizer, in context (:func:`placeholder_positions`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

MATH_SHEPHERD_TAG = "ки"
OPENRLHF_PLACEHOLDER = "ки"
_STEP_PREFIX = re.compile(r"^Step (\d+): ")


class FormatError(ValueError):
    """A record that does not follow its format; the message says why."""


@dataclass(frozen=True)
class LabelledSolution:
    """One solution in a step-label format: its question, steps and per-step labels (hard
    labels as bools; ``soft`` the fraction-correct value where the format carries one)."""

    question: str
    steps: tuple[str, ...]
    labels: tuple[bool, ...]
    soft: tuple[float | None, ...] | None = None

    def __post_init__(self) -> None:
        if not self.question.strip():
            raise FormatError("the question is empty")
        if not self.steps:
            raise FormatError("the solution has no steps")
        if len(self.labels) != len(self.steps):
            raise FormatError(f"{len(self.steps)} steps but {len(self.labels)} labels")
        if self.soft is not None and len(self.soft) != len(self.steps):
            raise FormatError(f"{len(self.steps)} steps but {len(self.soft)} soft labels")
        for i, step in enumerate(self.steps, 1):
            if not step.strip():
                raise FormatError(f"step {i} is empty")


def _check_tag_free(solution: LabelledSolution, tag: str, name: str) -> None:
    for i, text in enumerate((solution.question, *solution.steps)):
        if tag in text:
            where = "the question" if i == 0 else f"step {i}"
            raise FormatError(f"{where} contains the {name} tag {tag!r}: the record would not decode")


# --- TRL stepwise supervision ------------------------------------------------------------------


def encode_trl(solution: LabelledSolution) -> dict[str, Any]:
    return {"prompt": solution.question, "completions": list(solution.steps), "labels": list(solution.labels),
            "soft_labels": list(solution.soft) if solution.soft is not None else [None] * len(solution.steps)}


def _as_bool(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise FormatError(f"{where} is {value!r}, not a boolean (or 0/1)")


def decode_trl(record: dict[str, Any]) -> LabelledSolution:
    for key in ("prompt", "completions", "labels"):
        if key not in record:
            raise FormatError(f"no {key!r} field")
    prompt, completions, labels = record["prompt"], record["completions"], record["labels"]
    if not isinstance(prompt, str):
        raise FormatError("'prompt' is not a string (conversational prompts are not supported)")
    if not isinstance(completions, list) or not all(isinstance(c, str) for c in completions):
        raise FormatError("'completions' is not a list of strings")
    if not isinstance(labels, list):
        raise FormatError("'labels' is not a list")
    hard = tuple(_as_bool(v, f"label {i}") for i, v in enumerate(labels, 1))
    soft = record.get("soft_labels")
    if soft is not None:
        if not isinstance(soft, list) or not all(v is None or isinstance(v, (int, float)) for v in soft):
            raise FormatError("'soft_labels' is not a list of numbers")
        soft = None if all(v is None for v in soft) else tuple(None if v is None else float(v) for v in soft)
    return LabelledSolution(prompt, tuple(completions), hard, soft)


# --- Math-Shepherd -----------------------------------------------------------------------------


def _tagged(solution: LabelledSolution, marks: Sequence[str]) -> str:
    return solution.question + " " + "\n".join(
        f"Step {i}: {step} {mark}" for i, (step, mark) in enumerate(zip(solution.steps, marks), 1))


def encode_math_shepherd(solution: LabelledSolution) -> dict[str, Any]:
    _check_tag_free(solution, MATH_SHEPHERD_TAG, "Math-Shepherd")
    return {"input": _tagged(solution, [MATH_SHEPHERD_TAG] * len(solution.steps)),
            "label": _tagged(solution, ["+" if label else "-" for label in solution.labels])}


def _split_steps(text: str, tag: str) -> tuple[str, list[str]]:
    """The question and the steps of a tagged ``input``: pieces between tags, the first piece's
    ``Step 1:`` (or, lacking one, its first line break) separating the question."""
    pieces = text.split(tag)
    if len(pieces) < 2:
        raise FormatError(f"no {tag!r} step tag in the input")
    if pieces[-1].strip():
        raise FormatError(f"text after the last {tag!r} tag: {pieces[-1].strip()[:40]!r}")
    head, *rest = [p for p in pieces[:-1]]
    match = re.search(r"(?:^|\s)(Step 1: )", head)
    if match:
        question, first = head[:match.start(1)].rstrip(), head[match.start(1):]
    elif "\n" in head:
        question, first = head.split("\n", 1)
    else:
        raise FormatError("cannot tell the question from the first step (no 'Step 1:' and no line break)")
    steps = [first, *rest]
    out = []
    for i, step in enumerate(steps, 1):
        step = step.strip("\n").strip()
        found = _STEP_PREFIX.match(step)
        if found and int(found.group(1)) == i:
            step = step[found.end():]
        out.append(step.strip())
    return question.strip(), out


def decode_math_shepherd(record: dict[str, Any]) -> LabelledSolution:
    for key in ("input", "label"):
        if not isinstance(record.get(key), str):
            raise FormatError(f"no {key!r} string field")
    question, steps = _split_steps(record["input"], MATH_SHEPHERD_TAG)
    # The label text is the input with each tag replaced by + or -: walk both in step.
    text, label = record["input"], record["label"]
    marks, i, j = [], 0, 0
    while True:
        k = text.find(MATH_SHEPHERD_TAG, i)
        if k < 0:
            break
        if label[j:j + (k - i)] != text[i:k]:
            raise FormatError(f"'label' differs from 'input' before step tag {len(marks) + 1}")
        mark = label[j + (k - i):j + (k - i) + 1]
        if mark not in ("+", "-"):
            raise FormatError(f"label of step {len(marks) + 1} is {mark!r}, not '+' or '-'")
        marks.append(mark == "+")
        i, j = k + len(MATH_SHEPHERD_TAG), j + (k - i) + 1
    if label[j:] != text[i:]:
        raise FormatError("'label' differs from 'input' after the last step tag")
    return LabelledSolution(question, tuple(steps), tuple(marks))


# --- OpenRLHF process reward -------------------------------------------------------------------


def encode_openrlhf(solution: LabelledSolution, placeholder: str = OPENRLHF_PLACEHOLDER,
                    soft: bool = False) -> dict[str, Any]:
    """``soft``: the labels are the soft values (floats) instead of ``+``/``-``."""
    _check_tag_free(solution, placeholder, "OpenRLHF placeholder")
    if soft:
        if solution.soft is None or any(v is None for v in solution.soft):
            raise FormatError("soft labels asked for but the solution has steps without a soft value")
        labels: list[Any] = list(solution.soft)
    else:
        labels = ["+" if label else "-" for label in solution.labels]
    return {"input": _tagged(solution, [placeholder] * len(solution.steps)), "label": labels}


def decode_openrlhf(record: dict[str, Any], placeholder: str = OPENRLHF_PLACEHOLDER) -> LabelledSolution:
    if not isinstance(record.get("input"), str):
        raise FormatError("no 'input' string field")
    labels = record.get("label")
    if not isinstance(labels, list) or not labels:
        raise FormatError("'label' is not a non-empty list")
    question, steps = _split_steps(record["input"], placeholder)
    if len(steps) != len(labels):
        raise FormatError(f"{len(steps)} placeholders but {len(labels)} labels")
    if all(v in ("+", "-") for v in labels):
        return LabelledSolution(question, tuple(steps), tuple(v == "+" for v in labels))
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1 for v in labels):
        # A soft value is the fraction of correct rollouts: any correct one makes the step correct (HE).
        return LabelledSolution(question, tuple(steps), tuple(v > 0 for v in labels), tuple(float(v) for v in labels))
    raise FormatError("'label' mixes values or holds something other than '+'/'-' or numbers in [0, 1]")


def placeholder_positions(input_ids: Sequence[int], placeholder_id: int) -> list[int]:
    """Where OpenRLHF puts the labels: every position holding the placeholder's token id."""
    return [i for i, token in enumerate(input_ids) if token == placeholder_id]


ENCODERS = {"trl": encode_trl, "math-shepherd": encode_math_shepherd, "openrlhf": encode_openrlhf}
DECODERS = {"trl": decode_trl, "math-shepherd": decode_math_shepherd, "openrlhf": decode_openrlhf}
