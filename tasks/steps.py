"""Step formats: how solutions are prompted, split into steps and cut into prefixes.

A step format says where one step of a solution ends and the next begins:

- ``line``: every non-empty line is a step. The default, for the embedded SmolLM2 model,
  which is prompted (and few-shot taught) to write one calculation per line.
- ``paragraph``: steps are separated by a blank line, as Qwen2.5-Math-style chat models
  write them; a blank line inside display maths or inside a list item does not end a step.
- ``marker``: every step starts with a ``Step k:`` line (also ``**Step k:**``, ``## Step k``),
  for models prompted to number their steps; without any marker it is ``paragraph``.

A prefix is the first k steps re-joined with the format's separator plus a trailing
separator, so a rollout continues exactly where step k+1 would start; splitting a prefix
gives back exactly those k steps.
"""

from __future__ import annotations

import re
from typing import Literal

from tasks.arith import generate_problem, reference_solution

StepFormat = Literal["line", "paragraph", "marker"]
STEP_FORMATS: tuple[str, ...] = ("line", "paragraph", "marker")
PromptStyle = Literal["numeric", "math"]

SEPARATORS: dict[str, str] = {"line": "\n", "paragraph": "\n\n", "marker": "\n\n"}

SYSTEM_PROMPTS: dict[tuple[str, str], str] = {
    ("numeric", "line"): (
        "Solve the math word problem. Write one calculation per line. "
        "End with a line 'The answer is N.'"
    ),
    ("math", "line"): (
        "Solve the math problem step by step, one step per line. "
        "End with a line 'The answer is \\boxed{ANSWER}.'"
    ),
    ("numeric", "paragraph"): (
        "Solve the math word problem step by step. Separate the steps with a blank line. "
        "End with a paragraph 'The answer is N.'"
    ),
    ("math", "paragraph"): (
        "Solve the math problem step by step. Separate the steps with a blank line. "
        "End with a paragraph 'The answer is \\boxed{ANSWER}.'"
    ),
    ("numeric", "marker"): (
        "Solve the math word problem step by step. Start each step with 'Step k:' "
        "(Step 1:, Step 2:, ...) and separate the steps with a blank line. "
        "End with a line 'The answer is N.'"
    ),
    ("math", "marker"): (
        "Solve the math problem step by step. Start each step with 'Step k:' "
        "(Step 1:, Step 2:, ...) and separate the steps with a blank line. "
        "End with a line 'The answer is \\boxed{ANSWER}.'"
    ),
}

# Few-shot examples teach the 135M default model the step format (it ignores instructions
# alone). Arith examples come from a seed range no dataset split uses.
# Four shots, not two: SmolLM2 on default arith went from 17% to 45% correct (T=0.7, 240 samples).
_FEW_SHOT_SEED = -1
_NUMERIC_SHOTS = 4
_MATH_SHOT = (
    "What is $\\frac{1}{2} + \\frac{1}{3}$?",
    [
        "\\frac{1}{2} = \\frac{3}{6}",
        "\\frac{1}{3} = \\frac{2}{6}",
        "\\frac{3}{6} + \\frac{2}{6} = \\frac{5}{6}",
        "The answer is \\boxed{\\frac{5}{6}}.",
    ],
)

# A blank line: a line holding only whitespace (greedy, so a run of them is one gap, and the
# next paragraph keeps its indentation).
_BLANK_LINE = re.compile(r"(\n\s*\n)")
# Display-maths delimiters. ``\\[2pt]`` is a LaTeX line break with spacing, not an opener.
_DELIMITER = re.compile(r"(?<!\\)\\[\[\]]|\$\$|\\(begin|end)\{([^}]*)\}")
_LIST_ITEM = re.compile(r"^[ \t]*(?:\d+[.)]|[-*+])[ \t]", re.MULTILINE)
# After the number: punctuation or the end of the line, so prose such as "Step 2 is ..." at
# the start of a line is not taken for a marker.
_MARKER = re.compile(
    r"^[ \t]*(?:#+[ \t]*)?(?:\*\*)?step[ \t]+\d+[ \t]*(?:\*\*)?[ \t]*(?:[:.)\-–—]|$)",
    re.IGNORECASE | re.MULTILINE,
)


def _render(steps: list[str], step_format: StepFormat) -> str:
    """A few-shot answer in the format; with markers the answer line ends the last step."""
    if step_format == "marker":
        *work, answer = steps
        steps = [f"Step {i}: {s}" for i, s in enumerate(work, 1)]
        steps[-1] += "\n" + answer
    return join_steps(steps, step_format)


def few_shot(style: PromptStyle, step_format: StepFormat = "line") -> list[tuple[str, str]]:
    if style == "math":
        shots = [_MATH_SHOT]
    else:
        problems = [generate_problem(i, seed=_FEW_SHOT_SEED) for i in range(_NUMERIC_SHOTS)]
        shots = [(p.question, reference_solution(p)) for p in problems]
    return [(q, _render(steps, step_format)) for q, steps in shots]


def build_messages(question: str, style: PromptStyle, step_format: StepFormat = "line") -> list[dict[str, str]]:
    messages = [{"role": "system", "content": SYSTEM_PROMPTS[style, step_format]}]
    for q, a in few_shot(style, step_format):
        messages += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    messages.append({"role": "user", "content": question})
    return messages


def _maths_gaps(paragraphs: list[str]) -> set[int]:
    """Indices i such that the gap after paragraph i lies inside a closed display-maths block.

    Delimiters are matched with a stack as they come, so the answer for a text's first
    paragraphs never depends on what follows them (a prefix splits as the whole text did).
    ``\\[`` and ``$$`` cannot nest in maths, so meeting one while a block is open means that
    block was never closed: it is dropped, as is any opener left at the end, and ends (for
    splitting) with its paragraph.
    Environments nest (``\\[ \\begin{aligned} ... \\end{aligned} \\]``).
    """
    stack: list[tuple[str, int]] = []  # (expected closer, paragraph of the opener)
    gaps: set[int] = set()
    for i, paragraph in enumerate(paragraphs):
        for m in _DELIMITER.finditer(paragraph):
            token = m.group()
            closers = [closer for closer, _ in stack]
            if m.group(1) == "begin":
                stack.append((f"\\end{{{m.group(2)}}}", i))
            elif token == "\\[" or (token == "$$" and "$$" not in closers):
                stack = [("\\]" if token == "\\[" else "$$", i)]
            elif token in closers:  # a closer without its opener is ignored
                depth = len(closers) - 1 - closers[::-1].index(token)
                gaps.update(range(stack[depth][1], i))
                del stack[depth:]
    return gaps


def _paragraph_steps(text: str) -> list[str]:
    parts = _BLANK_LINE.split(text.strip())
    paragraphs, gaps = parts[::2], parts[1::2]
    in_maths = _maths_gaps(paragraphs)
    steps = [paragraphs[0]]
    for i, (gap, paragraph) in enumerate(zip(gaps, paragraphs[1:])):
        # An indented paragraph after a list item continues that item (markdown), while a
        # new item starts a new step: ProcessBench has consecutive numbered items as steps.
        if i in in_maths or (paragraph[0].isspace() and _LIST_ITEM.search(steps[-1])):
            steps[-1] += gap + paragraph
        else:
            steps.append(paragraph)
    return [s.strip() for s in steps if s.strip()]


def _marker_steps(text: str) -> list[str]:
    starts = [m.start() for m in _MARKER.finditer(text)]
    if not starts:
        return _paragraph_steps(text)
    # Text before the first marker is split into paragraphs, not kept as one step: the
    # prefix holding only that text has no marker, so it is split as paragraphs, and the
    # prefix must split back into the same steps.
    preamble = _paragraph_steps(text[: starts[0]])
    bounds = zip(starts, starts[1:] + [len(text)])
    return preamble + [text[a:b].strip() for a, b in bounds]


def split_steps(text: str, step_format: StepFormat = "line") -> list[str]:
    """Non-empty, stripped steps in order. An empty solution has no steps.

    ``line``: the non-empty lines. ``paragraph``: blank-line separated paragraphs, except
    that display maths (``\\[..\\]``, ``$$..$$``, ``\\begin{env}..\\end{env}``) and an
    indented continuation of a list item stay in one step; an opener that is never closed
    ends with its paragraph. ``marker``: each step runs from a ``Step k`` marker at the start
    of a line to the next one; text before the first marker is split as paragraphs, and a
    text without any marker falls back to ``paragraph``.
    """
    if step_format == "paragraph":
        return _paragraph_steps(text)
    if step_format == "marker":
        return _marker_steps(text)
    return [s.strip() for s in text.split("\n") if s.strip()]


def join_steps(steps: list[str], step_format: StepFormat) -> str:
    """The whole solution text; ``split_steps`` gives back steps that it produced."""
    return SEPARATORS[step_format].join(steps)


def prefix_text(steps: list[str], k: int, step_format: StepFormat = "line") -> str:
    """The first k steps as the model should see them before writing step k+1."""
    if not 1 <= k <= len(steps):
        raise ValueError(f"prefix length {k} outside 1..{len(steps)}")
    return join_steps(steps[:k], step_format) + SEPARATORS[step_format]
