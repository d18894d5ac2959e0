"""Final-answer extraction and grading.

Two grading paths:

* ``"numeric"`` (GSM8K, arith): :func:`parse_number` turns both sides into exact
  :class:`~fractions.Fraction` values, so ``0.5 == 1/2`` and ``"1,234" == "1234"`` with no float
  rounding. Pure Python, graded in-process.
* ``"math"`` (MATH-style LaTeX answers): `math-verify`_ (``parse`` + ``verify``). Its built-in
  timeouts use ``SIGALRM``, which only works on the main thread, and Prefect runs tasks in worker
  threads. So :class:`Grader` runs math-verify with its own timeouts disabled inside a
  :class:`pebble.ProcessPool`, which bounds each item by wall-clock time and kills (and replaces)
  a worker that runs over: sympy can spend minutes or unbounded memory on inputs such as
  ``9^{9^{9}}``.

.. _math-verify: https://github.com/huggingface/Math-Verify
"""

from __future__ import annotations

import logging
import re
import threading
from concurrent.futures import TimeoutError as FutureTimeoutError
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Literal, Sequence

if TYPE_CHECKING:
    from pebble import ProcessPool

logger = logging.getLogger(__name__)

GradeStatus = Literal["ok", "no_answer", "timeout", "error"]
GradeKind = Literal["numeric", "math"]


@dataclass(frozen=True)
class GradeResult:
    """Outcome of grading one answer against its gold answer.

    ``status`` says how far grading got: ``"ok"`` (graded; ``correct`` is meaningful),
    ``"no_answer"`` (nothing extractable), ``"timeout"`` (the checker ran past its time budget) or
    ``"error"`` (the checker crashed, or the answer was too long to send to it). Only ``"ok"`` can
    be correct.
    """

    correct: bool
    status: GradeStatus


# --------------------------------------------------------------------------------------------
# Answer extraction
# --------------------------------------------------------------------------------------------

#: Only the tail of a solution is searched, which bounds the work on pathological rollouts.
EXTRACT_WINDOW_CHARS = 4000

_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
# "The answer is X", "the final answer is: X", "Answer: X", "**Final Answer:** X".
_ANSWER_PHRASE_RE = re.compile(r"\banswer\s*(?:\*\*)?\s*(?:is\b\s*:?|:)(?:\s*\*\*)?([^\n]*)", re.IGNORECASE)
_HASH_RE = re.compile(r"####([^\n]*)")
# A sentence-ending period: a period followed by whitespace (``18.5`` is not one).
_SENTENCE_END_RE = re.compile(r"\.\s")


def _boxed_contents(text: str) -> list[str]:
    """Contents of every ``\\boxed{...}`` / ``\\fbox{...}`` whose braces balance, in text order.

    An unclosed box (a rollout cut off by the token limit) is skipped, so an earlier complete box
    still counts.
    """
    contents = []
    for match in _BOX_RE.finditer(text):
        depth = 1
        start = match.end()
        for pos in range(start, len(text)):
            char = text[pos]
            if char == "{":
                depth += 1
            elif char == "}":
                depth -= 1
                if depth == 0:
                    contents.append(text[start:pos])
                    break
    return contents


def _clean_candidate(candidate: str) -> str | None:
    """Strip markup around an answer: spaces, ``$`` signs, ``\\(..\\)``, ``**``, a trailing period.

    A trailing unit word ("18 apples") is kept: it is part of what the model wrote.
    """
    text = candidate.replace("$", "").strip().rstrip(".").strip("*").strip()
    for left, right in (("\\(", "\\)"), ("\\[", "\\]")):
        if text.startswith(left) and text.endswith(right):
            text = text[len(left) : -len(right)]
    text = text.strip().rstrip(".").rstrip()
    return text or None


def extract_answer(text: str) -> str | None:
    """Final answer of a model-written solution, or None if it states none.

    Priority: the last ``\\boxed{...}``/``\\fbox{...}`` (nested braces fine), else the last
    "The answer is X" / "The final answer is X" / "Answer: X" (case-insensitive; X runs to the end
    of its line or sentence), else the last ``#### X``. There is deliberately no fallback to "the
    last number in the text": a solution without an explicit answer marker has no answer. Only the
    last :data:`EXTRACT_WINDOW_CHARS` characters are searched. Returns None when the chosen
    candidate is empty after cleaning.
    """
    text = text[-EXTRACT_WINDOW_CHARS:]

    boxed = _boxed_contents(text)
    if boxed:
        return _clean_candidate(boxed[-1])

    phrases = list(_ANSWER_PHRASE_RE.finditer(text))
    if phrases:
        candidate = phrases[-1].group(1)
        sentence_end = _SENTENCE_END_RE.search(candidate)
        if sentence_end is not None:
            candidate = candidate[: sentence_end.start()]
        return _clean_candidate(candidate)

    hashes = list(_HASH_RE.finditer(text))
    if hashes:
        return _clean_candidate(hashes[-1].group(1))
    return None


def gsm8k_gold(answer_field: str) -> str | None:
    """Gold final answer of a GSM8K ``answer`` field: the text after its last ``####``, stripped,
    commas removed. None if there is no ``####`` (or nothing after it)."""
    if "####" not in answer_field:
        return None
    gold = answer_field.rsplit("####", 1)[1].strip().replace(",", "")
    return gold or None


# --------------------------------------------------------------------------------------------
# Numeric grading
# --------------------------------------------------------------------------------------------

_TEXT_WRAPPER_RE = re.compile(r"^\\(?:text|textbf|mathrm|mathbf)\{(.*)\}$")
_DECIMAL_RE = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)$")
_THOUSANDS_RE = re.compile(r"^[+-]?\d{1,3}(?:,\d{3})+(?:\.\d*)?$")
_SLASH_FRACTION_RE = re.compile(r"^([+-]?\d+)\s*/\s*(\d+)$")
_LATEX_FRACTION_RE = re.compile(r"^([+-]?)\\[dt]?frac(?:\{\s*([+-]?\d+)\s*\}\{\s*([+-]?\d+)\s*\}|(\d)(\d))$")
#: Longer strings are not numbers we grade (and int() refuses > 4300 digits anyway).
_MAX_NUMBER_CHARS = 200


def parse_number(text: str) -> Fraction | None:
    """Exact value of a clean number, or None if ``text`` is not one.

    Accepts integers and decimals ("18", "-3", "18.", "18.50"), thousands separators ("1,234"),
    a currency sign ("$18.50", "\\$18"), a percent sign ("50%", "50\\%"), integer fractions
    ("3/4", "\\frac{3}{4}", "\\dfrac34"), a trailing period and a surrounding ``\\text{...}``.
    The percent sign is simply ignored: "50%" parses to 50, so ``50%`` and ``0.5`` are NOT equal
    (GSM8K golds are written without the sign, so this is the right reading there). Anything else,
    e.g. a unit word ("10 apples") or an expression ("2+3"), gives None.
    """
    s = text.strip()
    if not s or len(s) > _MAX_NUMBER_CHARS:
        return None
    wrapped = _TEXT_WRAPPER_RE.match(s)
    if wrapped:
        s = wrapped.group(1).strip()
    s = s.replace("\u2212", "-")  # unicode minus
    for token in ("\\$", "$", "\\%", "%"):
        s = s.replace(token, "")
    s = s.strip()
    while s.endswith("."):
        s = s[:-1].rstrip()
    if "," in s:
        # Commas only as thousands separators: "1,234" is 1234, but "1,2" is not a number.
        if not _THOUSANDS_RE.match(s):
            return None
        s = s.replace(",", "")
    try:
        if _DECIMAL_RE.match(s):
            return Fraction(s)
        slash = _SLASH_FRACTION_RE.match(s)
        if slash:
            denominator = int(slash.group(2))
            return Fraction(int(slash.group(1)), denominator) if denominator else None
        latex = _LATEX_FRACTION_RE.match(s)
        if latex:
            sign, numerator, denominator = latex.group(1), latex.group(2), latex.group(3)
            if numerator is None:  # \frac34 shorthand
                numerator, denominator = latex.group(4), latex.group(5)
            if int(denominator) == 0:
                return None
            value = Fraction(int(numerator), int(denominator))
            return -value if sign == "-" else value
    except ValueError:  # e.g. too many digits for int()
        return None
    return None


def grade_numeric(answer: str | None, gold: str) -> GradeResult:
    """Grade by exact numeric equality (``Fraction``, so 0.5 == 1/2 and 18.0 == 18).

    ``no_answer`` if ``answer`` is None; an answer that is not a clean number is graded incorrect
    (status ``ok``). Raises ValueError if ``gold`` is not a number (a data bug, not a model error).
    """
    gold_value = parse_number(gold)
    if gold_value is None:
        raise ValueError(f"numeric gold answer is not a number: {gold!r}")
    if answer is None:
        return GradeResult(correct=False, status="no_answer")
    return GradeResult(correct=parse_number(answer) == gold_value, status="ok")


# --------------------------------------------------------------------------------------------
# math-verify grading (runs in worker processes)
# --------------------------------------------------------------------------------------------


def _math_verify_parse(latex: str) -> list[Any]:
    """math-verify parse of a bare LaTeX answer: as ``$...$``, else as ``\\boxed{...}``.

    The first form that yields a sympy object wins; if neither does, the first non-empty result
    (math-verify's raw-string fallback, compared as a string) is used.
    """
    from math_verify import parse

    fallback: list[Any] = []
    for wrapped in (f"${latex}$", f"\\boxed{{{latex}}}"):
        parsed = parse(wrapped, parsing_timeout=None)  # type: ignore[arg-type]  # pebble bounds time
        if any(not isinstance(item, str) for item in parsed):
            return parsed
        fallback = fallback or parsed
    return fallback


def _math_verify_worker(answer: str, gold: str) -> bool:
    """Runs in a pebble worker process: is ``answer`` equivalent to ``gold``?

    Module level so that it pickles. math-verify's SIGALRM timeouts are off (``None``); the pool's
    per-task timeout bounds the time instead.
    """
    import math_verify.grader
    import math_verify.parser
    from math_verify import verify

    # We do handle timeouts (pebble), so silence math-verify's once-per-process warning about it.
    math_verify.grader.TIMEOUT_WARNING_SHOWN = True
    math_verify.parser.TIMEOUT_WARNING_SHOWN = True

    gold_parsed = _math_verify_parse(gold)
    if not gold_parsed:
        raise ValueError(f"math-verify could not parse the gold answer {gold!r}")
    answer_parsed = _math_verify_parse(answer)
    if not answer_parsed:
        return False
    return bool(verify(gold_parsed, answer_parsed, timeout_seconds=None))


def _math_verify_gold_worker(gold: str) -> bool:
    """Runs in a pebble worker process: does math-verify read ``gold`` as a maths object?

    math-verify falls back to the raw string for text it cannot parse, and such a gold would
    match nothing the model writes: every rollout of its problem would be labelled incorrect.
    """
    import math_verify.parser

    math_verify.parser.TIMEOUT_WARNING_SHOWN = True
    return any(not isinstance(item, str) for item in _math_verify_parse(gold))


class Grader:
    """Grades many ``(answer, gold, kind)`` items; kind is ``"numeric"`` (GSM8K, arith) or
    ``"math"`` (MATH-style, math-verify).

    ``numeric`` items are graded in-process. ``math`` items go to a :class:`pebble.ProcessPool`
    of ``workers`` processes, created on the first math item (so numeric-only use never starts
    processes or imports sympy). Each math item gets ``timeout_s`` seconds of wall-clock time once
    it starts on a worker; one that runs over is killed and graded ``timeout`` (incorrect), a
    crashed worker or any checker exception gives ``error`` (incorrect), and pebble replaces the
    lost worker so the pool keeps working. Answers longer than ``max_answer_chars`` are graded
    ``error`` without being sent to the checker. Safe to call from any thread, including
    concurrently. After :meth:`close` the grader can be used again (a new pool is started).
    """

    def __init__(self, workers: int = 2, timeout_s: float = 5.0, max_answer_chars: int = 2000) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.workers = workers
        self.timeout_s = timeout_s
        self.max_answer_chars = max_answer_chars
        self._pool: ProcessPool | None = None
        self._lock = threading.Lock()

    def _ensure_pool(self) -> ProcessPool:
        with self._lock:
            if self._pool is None:
                import multiprocessing

                from pebble import ProcessPool

                # Workers fork from a clean forkserver, not from this process: here vLLM and torch
                # hold many threads, and forking a threaded process can deadlock the child.
                # The server preloads math-verify once, so every (replacement) worker starts warm.
                context = multiprocessing.get_context("forkserver")
                context.set_forkserver_preload(["math_verify"])
                self._pool = ProcessPool(max_workers=self.workers, context=context)
            return self._pool

    def grade(self, items: Sequence[tuple[str | None, str, GradeKind]]) -> list[GradeResult]:
        """Grade ``items`` and return one result per item, in order.

        All math items are scheduled before any is waited on, so they run in parallel. Raises
        ValueError up front (before grading anything) for an unknown kind, a numeric gold that is
        not a number, or a blank math gold: those are data bugs, not model errors.
        """
        for index, (_, gold, kind) in enumerate(items):
            if kind == "numeric":
                if parse_number(gold) is None:
                    raise ValueError(f"item {index}: numeric gold answer is not a number: {gold!r}")
            elif kind == "math":
                if not gold.strip():
                    raise ValueError(f"item {index}: math gold answer is blank")
            else:
                raise ValueError(f"item {index}: unknown grading kind {kind!r}")

        results: list[GradeResult | None] = [None] * len(items)
        futures = {}
        for index, (answer, gold, kind) in enumerate(items):
            if kind == "numeric":
                results[index] = grade_numeric(answer, gold)
            elif answer is None or not answer.strip():
                results[index] = GradeResult(correct=False, status="no_answer")
            elif len(answer) > self.max_answer_chars:
                results[index] = GradeResult(correct=False, status="error")
            else:
                futures[index] = self._schedule(answer, gold)

        for index, future in futures.items():
            answer, gold, _ = items[index]
            try:
                results[index] = GradeResult(correct=bool(self._result(future, answer, gold)), status="ok")
            except FutureTimeoutError:
                logger.warning("math-verify timed out after %.1fs on answer %.200r", self.timeout_s, items[index][0])
                results[index] = GradeResult(correct=False, status="timeout")
            except Exception as error:  # noqa: BLE001 - includes pebble.ProcessExpired (worker died)
                logger.warning("math-verify failed on answer %.200r: %r", items[index][0], error)
                results[index] = GradeResult(correct=False, status="error")
        assert all(result is not None for result in results)
        return results  # type: ignore[return-value]  # every slot was filled above

    def check_golds(self, items: Sequence[tuple[str, GradeKind]]) -> list[str | None]:
        """Whether each gold answer can be graded at all: None if it can, else the reason.

        Checked once, at ingest, so a problem whose gold the grader cannot read goes to quarantine
        instead of turning every rollout of it into an "incorrect" label. Numeric golds must be
        numbers; math golds must parse as maths (not just as a string) within ``timeout_s``.
        """
        reasons: list[str | None] = [None] * len(items)
        futures = {}
        for index, (gold, kind) in enumerate(items):
            if not gold.strip():
                reasons[index] = "unparseable gold answer: blank"
            elif kind == "numeric":
                if parse_number(gold) is None:
                    reasons[index] = f"unparseable gold answer: {gold[:80]!r} is not a number"
            elif kind == "math":
                futures[index] = self._schedule(gold, fn=_math_verify_gold_worker)
            else:
                raise ValueError(f"item {index}: unknown grading kind {kind!r}")
        for index, future in futures.items():
            gold = items[index][0]
            try:
                if not self._result(future, gold, fn=_math_verify_gold_worker):
                    reasons[index] = f"unparseable gold answer: math-verify reads {gold[:80]!r} only as text"
            except FutureTimeoutError:
                reasons[index] = f"unparseable gold answer: math-verify did not parse {gold[:80]!r} in {self.timeout_s:g} s"
            except Exception as error:  # noqa: BLE001 - the checker crashed on it
                reasons[index] = f"unparseable gold answer: math-verify failed on {gold[:80]!r} ({error!r})"
        return reasons

    def _schedule(self, *args: str, fn: Any = _math_verify_worker) -> Any:
        """Schedule one check; a pool that broke as a whole (not just a worker) is replaced once."""
        pool = self._ensure_pool()
        try:
            return pool.schedule(fn, args=args, timeout=self.timeout_s)
        except RuntimeError as error:  # pebble: "The Pool is not active" after its manager failed
            self._replace(pool, error)
            return self._ensure_pool().schedule(fn, args=args, timeout=self.timeout_s)

    def _result(self, future: Any, *args: str, fn: Any = _math_verify_worker) -> Any:
        """A scheduled check's result. Pebble may accept work on a pool whose workers cannot be
        restarted (forkserver killed with them) and then fail it with BrokenProcessPool: the check
        then runs once more on a new pool. Timeouts and a crash on this item are the caller's."""
        try:
            return future.result()
        except BrokenProcessPool as error:
            with self._lock:
                pool = self._pool
            if pool is not None:
                self._replace(pool, error)
            return self._schedule(*args, fn=fn).result()

    def _replace(self, pool: Any, error: BaseException) -> None:
        logger.warning("math-verify pool stopped working (%r); starting a new one", error)
        with self._lock:
            if self._pool is pool:
                self._pool = None
        pool.stop()

    def close(self) -> None:
        """Stop the worker pool (killing any running check). Idempotent."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.stop()
            pool.join()

    def __enter__(self) -> Grader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
