"""Step format: how solutions are prompted, split into steps and cut into prefixes.

The generator is asked for one step per line and a final ``The answer is X.`` line. The
splitter turns a solution into its non-empty lines (or blank-line separated paragraphs for
``paragraph`` mode); a prefix is the first k steps re-joined with the separator plus a
trailing separator, so a rollout continues exactly where step k+1 would start.
"""

from __future__ import annotations

from typing import Literal

from tasks.arith import generate_problem, reference_solution

StepMode = Literal["line", "paragraph"]
PromptStyle = Literal["numeric", "math"]

SEPARATORS: dict[str, str] = {"line": "\n", "paragraph": "\n\n"}

SYSTEM_PROMPTS: dict[str, str] = {
    "numeric": (
        "Solve the math word problem. Write one calculation per line. "
        "End with a line 'The answer is N.'"
    ),
    "math": (
        "Solve the math problem step by step, one step per line. "
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
    "\\frac{1}{2} = \\frac{3}{6}\n\\frac{1}{3} = \\frac{2}{6}\n"
    "\\frac{3}{6} + \\frac{2}{6} = \\frac{5}{6}\nThe answer is \\boxed{\\frac{5}{6}}.",
)


def few_shot(style: PromptStyle) -> list[tuple[str, str]]:
    if style == "math":
        return [_MATH_SHOT]
    shots = [generate_problem(i, seed=_FEW_SHOT_SEED) for i in range(_NUMERIC_SHOTS)]
    return [(p.question, "\n".join(reference_solution(p))) for p in shots]


def build_messages(question: str, style: PromptStyle) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": SYSTEM_PROMPTS[style]}]
    for q, a in few_shot(style):
        messages += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    messages.append({"role": "user", "content": question})
    return messages


def split_steps(text: str, mode: StepMode = "line") -> list[str]:
    """Non-empty, stripped steps in order. An empty solution has no steps."""
    if mode == "paragraph":
        parts = text.split("\n\n")
    else:
        parts = text.split("\n")
    return [p.strip() for p in parts if p.strip()]


def prefix_text(steps: list[str], k: int, mode: StepMode = "line") -> str:
    """The first k steps as the model should see them before writing step k+1."""
    if not 1 <= k <= len(steps):
        raise ValueError(f"prefix length {k} outside 1..{len(steps)}")
    sep = SEPARATORS[mode]
    return sep.join(steps[:k]) + sep
