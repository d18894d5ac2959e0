"""Synthetic multi-step arithmetic word problems with exactly checkable steps.

Each problem is a short story about one quantity that changes 2-4 times (+, -, x with small
integers). The generator is seeded per problem (``seed + index``), so problem ``i`` is the same
on every machine, and it stores the gold intermediate value after every operation. That makes
every step of any model-written solution checkable, which is why ``arith`` is the embedded
default domain: SmolLM2-135M solves ~1% of GSM8K but a useful fraction of these.

Gold step labels (:func:`gold_step_labels`): a step is correct iff every equation in it is
arithmetically right, every number it uses is *known* (given in the problem, or derived by an
earlier correct equation), and every result it computes is a gold intermediate value (so it does
work the problem needs). A step's label is 1 iff it and all earlier steps are correct; the last step
of a solution is correct only if the solution's final answer is the gold answer.
"""

from __future__ import annotations

import ast
import operator
import random
import re
from dataclasses import dataclass, field
from fractions import Fraction

from pydantic import BaseModel, Field


class ArithDifficulty(BaseModel):
    """Difficulty knobs. Defaults are tuned so SmolLM2-135M-Instruct is right on ~30-60%.

    Measured (60 problems x 4 samples, 4-shot prompt of tasks/steps.py): these defaults give
    45% at T=0.7 (48% at 0.5, 60% at 0.3); '+-' with start <= 20 and operands <= 10 gave 4-14%
    even with easier prompts.
    """

    min_ops: int = Field(2, ge=1, le=6, description="fewest operations per problem")
    max_ops: int = Field(2, ge=1, le=6, description="most operations per problem")
    max_start: int = Field(10, ge=3, description="largest starting quantity")
    max_operand: int = Field(5, ge=2, description="largest operand of + and -")
    max_multiplier: int = Field(3, ge=2, description="largest multiplier of x")
    ops: str = Field("+", description="allowed operations, a subset of '+-*'")


NAMES = ["Tom", "Anna", "Lena", "Omar", "Ravi", "Mia", "Jack", "Sara", "Ben", "Yuki", "Ivan", "Nora"]
ITEMS = ["apples", "marbles", "stickers", "books", "cookies", "stamps", "pencils", "shells", "coins", "cards"]
PLUS = ["buys {x} more {item}", "finds {x} more {item}", "gets {x} more {item} from a friend"]
MINUS = ["gives away {x} {item}", "loses {x} {item}", "sells {x} {item}"]
TIMES = ["ends up with {x} times as many {item} as before"]


@dataclass(frozen=True)
class ArithProblem:
    index: int
    question: str
    answer: int
    start: int
    operations: tuple[tuple[str, int], ...]  # (op, operand) in story order
    gold_values: tuple[int, ...]  # value after each operation; the last one is the answer
    given_numbers: tuple[int, ...] = field(default=())


def generate_problem(index: int, seed: int = 0, difficulty: ArithDifficulty | None = None) -> ArithProblem:
    d = difficulty or ArithDifficulty()
    if d.min_ops > d.max_ops:
        raise ValueError(f"arith difficulty: min_ops={d.min_ops} > max_ops={d.max_ops}")
    if not d.ops or set(d.ops) - set("+-*"):
        raise ValueError(f"arith difficulty: ops={d.ops!r} must be a non-empty subset of '+-*'")
    rng = random.Random(f"arith:{seed}:{index}")
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    value = rng.randint(3, d.max_start)
    start = value
    sentences = [f"{name} has {value} {item}."]
    operations: list[tuple[str, int]] = []
    gold: list[int] = []
    for i in range(rng.randint(d.min_ops, d.max_ops)):
        # subtraction keeps quantities positive; with ops="-" alone a small value falls back to "+"
        choices = [op for op in d.ops if not (op == "-" and value < 3)] or ["+"]
        op = rng.choice(choices)
        if op == "+":
            x = rng.randint(2, d.max_operand)
            value += x
            phrase = rng.choice(PLUS)
        elif op == "-":
            x = rng.randint(2, min(d.max_operand, value - 1))
            value -= x
            phrase = rng.choice(MINUS)
        else:
            x = rng.randint(2, d.max_multiplier)
            value *= x
            phrase = rng.choice(TIMES)
        operations.append((op, x))
        gold.append(value)
        lead = "Then" if i else "First,"
        sentences.append(f"{lead} {name.split()[0]} {phrase.format(x=x, item=item)}.")
    sentences.append(f"How many {item} does {name} have now?")
    return ArithProblem(
        index=index,
        question=" ".join(sentences),
        answer=value,
        start=start,
        operations=tuple(operations),
        gold_values=tuple(gold),
        given_numbers=(start, *(x for _, x in operations)),
    )


def reference_solution(problem: ArithProblem) -> list[str]:
    """A correct solution in the step format the prompts ask for (used as the few-shot example)."""
    steps, value = [], problem.start
    for (op, x), result in zip(problem.operations, problem.gold_values):
        sym = {"+": "+", "-": "-", "*": "*"}[op]
        steps.append(f"{value} {sym} {x} = {result}")
        value = result
    steps.append(f"The answer is {problem.answer}.")
    return steps


# --- checking steps -----------------------------------------------------------------------

_NUMBER = r"-?\d+(?:,\d{3})*(?:\.\d+)?"
_EQUATION = re.compile(rf"((?:\(?\s*{_NUMBER}\s*\)?\s*[-+*/x×÷]\s*)+\(?\s*{_NUMBER}\s*\)?)\s*=\s*({_NUMBER})")
_NUM = re.compile(_NUMBER)
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def _to_fraction(text: str) -> Fraction:
    return Fraction(text.replace(",", ""))


def _evaluate(expression: str) -> Fraction | None:
    """Evaluate + - * / over numbers exactly; None if it is not such an expression."""
    cleaned = expression.strip().replace("×", "*").replace("÷", "/").replace(",", "")
    cleaned = re.sub(r"(?<=[\d\s)])x(?=[\s\d(])", "*", cleaned)
    try:
        tree = ast.parse(cleaned, mode="eval").body
    except SyntaxError:
        return None

    def walk(node: ast.AST) -> Fraction:
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -walk(node.operand)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return Fraction(str(node.value))
        raise ValueError("not arithmetic")

    try:
        return walk(tree)
    except (ValueError, ZeroDivisionError):
        return None


def check_step(step: str, known: set[Fraction], gold_values: set[Fraction]) -> tuple[bool, set[Fraction]]:
    """Check one step; return (correct, results it derived).

    Correct iff every equation's arithmetic is right, its operands are known (given in the
    problem or derived by an earlier equation) and its result is a gold intermediate value, and
    every other number in the step is known too (no quantity appears from nowhere).
    """
    known = set(known)
    derived: set[Fraction] = set()
    for match in _EQUATION.finditer(step):
        expression, result = match.group(1), _to_fraction(match.group(2))
        value = _evaluate(expression)
        operands = {_to_fraction(n) for n in _NUM.findall(expression)}
        if value is None or value != result or not operands <= known or result not in gold_values:
            return False, derived
        known.add(result)  # chained equations in one step may use it
        derived.add(result)
    return all(_to_fraction(n) in known for n in _NUM.findall(step)), derived


def gold_step_labels(problem: ArithProblem, steps: list[str], solution_correct: bool) -> list[bool]:
    """Prefix-correctness of each step (see module docstring)."""
    gold_values = {Fraction(v) for v in problem.gold_values}
    known = {Fraction(v) for v in problem.given_numbers}
    labels: list[bool] = []
    ok = True
    for i, step in enumerate(steps):
        if ok:
            step_ok, derived = check_step(step, known, gold_values)
            known |= derived
            ok = step_ok
        if i == len(steps) - 1:
            ok = ok and solution_correct
        labels.append(ok)
    return labels


def problem_from_meta(question: str, answer: str, meta: dict) -> ArithProblem:
    """Rebuild a stored arith problem (``problems.meta``) for step checking."""
    operations = tuple((op, int(x)) for op, x in meta["operations"])
    given = tuple(int(v) for v in meta["given_numbers"])
    return ArithProblem(
        index=int(meta.get("index", -1)),
        question=question,
        answer=int(answer),
        start=given[0],
        operations=operations,
        gold_values=tuple(int(v) for v in meta["gold_values"]),
        given_numbers=given,
    )
