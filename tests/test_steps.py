"""Step splitting, prefixes and prompts (pure functions)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.datasets import data_dir
from tasks.steps import STEP_FORMATS, build_messages, join_steps, prefix_text, split_steps


def test_split_lines_drops_blank_lines_and_strips():
    text = "  5 + 3 = 8\n\n8 - 2 = 6  \n\nThe answer is 6.\n"
    assert split_steps(text) == ["5 + 3 = 8", "8 - 2 = 6", "The answer is 6."]


def test_line_format_ignores_maths_lists_and_markers():
    text = "Step 1: add\n\\[\nx = 1\n\n\\]\n1. a\n\n   b\n"
    assert split_steps(text, "line") == ["Step 1: add", "\\[", "x = 1", "\\]", "1. a", "b"]


def test_split_paragraphs():
    text = "First we add.\nStill step one.\n\nThen subtract.\n\nThe answer is 6."
    assert split_steps(text, "paragraph") == ["First we add.\nStill step one.", "Then subtract.", "The answer is 6."]


def test_paragraph_blank_line_is_any_whitespace_only_line():
    assert split_steps(" a \n \t \n\n b\n\n", "paragraph") == ["a", "b"]


def test_empty_solution_has_no_steps():
    for step_format in STEP_FORMATS:
        assert split_steps("", step_format) == [] and split_steps("\n \n", step_format) == []


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "We add:\n\\[\nx = 1\n\n+ 2\n\\]\nso x = 3.\n\nThe answer is 3.",
            ["We add:\n\\[\nx = 1\n\n+ 2\n\\]\nso x = 3.", "The answer is 3."],
        ),
        (
            "We add:\n$$\nx = 1\n\n+ 2\n$$\n\nThe answer is 3.",
            ["We add:\n$$\nx = 1\n\n+ 2\n$$", "The answer is 3."],
        ),
        (
            "We add:\n\\begin{align}\nx &= 1\n\n&= 2\n\\end{align}\n\nThe answer is 2.",
            ["We add:\n\\begin{align}\nx &= 1\n\n&= 2\n\\end{align}", "The answer is 2."],
        ),
        (  # an environment nested in \[ .. \]: the blank line is inside both
            "\\[\n\\begin{cases}\n1\n\\end{cases}\n\n2\n\\]\n\nDone.",
            ["\\[\n\\begin{cases}\n1\n\\end{cases}\n\n2\n\\]", "Done."],
        ),
        (  # closed on the same line: no block is open across the blank line
            "$$x = 1$$\n\n\\[y = 2\\]\n\nDone.",
            ["$$x = 1$$", "\\[y = 2\\]", "Done."],
        ),
        (  # \\[2pt] is a LaTeX line break, not an opener
            "a \\\\[2pt]\n\nb \\]",
            ["a \\\\[2pt]", "b \\]"],
        ),
    ],
)
def test_paragraph_keeps_display_maths_together(text, expected):
    assert split_steps(text, "paragraph") == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        (  # ProcessBench math-85: the next paragraph opens a new \[ before any \]
            "First:\n\\[\nx = 1\n\nThen:\n\\[\ny = 2\n\\]\n\nDone.",
            ["First:\n\\[\nx = 1", "Then:\n\\[\ny = 2\n\\]", "Done."],
        ),
        ("A\n\\[\nx\n\nB\n\nC", ["A\n\\[\nx", "B", "C"]),
        (  # the abandoned \[ stays abandoned: a later stray \] does not close it
            "A\n\\[\nx\n\nB \\[y\\]\n\nC\n\\]",
            ["A\n\\[\nx", "B \\[y\\]", "C\n\\]"],
        ),
        ("A\n$$\nx\n\nB\n\nC", ["A\n$$\nx", "B", "C"]),
        ("A\n\\begin{align}\nx\n\nB", ["A\n\\begin{align}\nx", "B"]),
    ],
)
def test_paragraph_unclosed_opener_ends_with_its_paragraph(text, expected):
    assert split_steps(text, "paragraph") == expected


def test_paragraph_lists_indented_continuation_joins_new_item_splits():
    text = "1. Add.\n\n   5 + 3 = 8\n\n2. Subtract.\n\n- Note.\n\n  8 - 2 = 6\n\nThe answer is 6."
    assert split_steps(text, "paragraph") == [
        "1. Add.\n\n   5 + 3 = 8",
        "2. Subtract.",
        "- Note.\n\n  8 - 2 = 6",
        "The answer is 6.",
    ]
    # Not after a list item: an indented paragraph is a step of its own.
    assert split_steps("Intro.\n\n    x = 1", "paragraph") == ["Intro.", "x = 1"]


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "Step 1: Add.\n5 + 3 = 8\n\nSo 8.\n\nStep 2. Subtract.\n8 - 2 = 6\n\nThe answer is 6.\n",
            ["Step 1: Add.\n5 + 3 = 8\n\nSo 8.", "Step 2. Subtract.\n8 - 2 = 6\n\nThe answer is 6."],
        ),
        ("**Step 1:** a\n\n**Step 2:** b\nc", ["**Step 1:** a", "**Step 2:** b\nc"]),
        ("## Step 1: a\n\nx\n\n### Step 2 - b", ["## Step 1: a\n\nx", "### Step 2 - b"]),
        ("STEP 1: a\nstep 12: b", ["STEP 1: a", "step 12: b"]),
        (
            "Let us solve it.\n\nStep 1: a\n\nStep 2: b",
            ["Let us solve it.", "Step 1: a", "Step 2: b"],
        ),
        (  # no marker (mid-line, or not followed by punctuation): paragraph splitting
            "We do Step 1: a\n\nStep 2 is easy\n\\[\nx\n\ny\n\\]",
            ["We do Step 1: a", "Step 2 is easy\n\\[\nx\n\ny\n\\]"],
        ),
    ],
)
def test_marker_steps(text, expected):
    assert split_steps(text, "marker") == expected


@pytest.mark.parametrize("split", ["gsm8k", "math"])
def test_processbench_steps_round_trip_as_paragraphs(split):
    """Data no one here wrote: ProcessBench's own step segmentation, joined by blank lines."""
    samples = json.loads((data_dir() / "processbench" / f"{split}.json").read_text())
    mismatched = [
        s["id"] for s in samples if split_steps("\n\n".join(s["steps"]), "paragraph") != [t.strip() for t in s["steps"]]
    ]
    assert mismatched == []


def test_prefix_ends_with_separator_so_rollout_starts_a_new_step():
    steps = ["a", "b", "c"]
    assert prefix_text(steps, 1) == "a\n"
    assert prefix_text(steps, 2) == "a\nb\n"
    assert prefix_text(steps, 2, "paragraph") == "a\n\nb\n\n"
    assert prefix_text(steps, 2, "marker") == "a\n\nb\n\n"
    assert join_steps(steps, "line") == "a\nb\nc"
    assert join_steps(steps, "marker") == "a\n\nb\n\nc"
    with pytest.raises(ValueError):
        prefix_text(steps, 0)
    with pytest.raises(ValueError):
        prefix_text(steps, 4)


def _assert_round_trips(text: str, step_format: str) -> None:
    steps = split_steps(text, step_format)
    assert split_steps(join_steps(steps, step_format), step_format) == steps
    for k in range(1, len(steps) + 1):
        assert split_steps(prefix_text(steps, k, step_format), step_format) == steps[:k]


_EXAMPLE = (
    "Intro.\n\n1. a\n\n   b\n\nStep 1: \\[\nx\n\ny\n\\]\n\n**Step 2:** $$\nz\n\n$$\n\n"
    "Step 3: \\[\nopen\n\nThe answer is 3."
)


@pytest.mark.parametrize("step_format", STEP_FORMATS)
def test_prefix_and_join_round_trip(step_format):
    _assert_round_trips(_EXAMPLE, step_format)


# Texts built from the pieces the splitters react to, so the property test reaches the
# maths, list and marker rules instead of plain prose.
_PIECES = st.sampled_from(
    ["x", " ", "\n", "\n\n", "\n  \n", "\\[", "\\]", "$$", "\\begin{align}", "\\end{align}",
     "\\begin{cases}", "\\end{cases}", "1. ", "- ", "   ", "Step 1:", "**Step 2:**", "## Step 3 -"]
)


@settings(max_examples=300, deadline=None, database=None)
@given(st.lists(_PIECES, max_size=30).map("".join), st.sampled_from(STEP_FORMATS))
def test_prefix_and_join_round_trip_property(text, step_format):
    _assert_round_trips(text, step_format)


@pytest.mark.parametrize(
    "style, system",
    [
        ("numeric", "Solve the math word problem. Write one calculation per line. End with a line 'The answer is N.'"),
        (
            "math",
            "Solve the math problem step by step, one step per line. "
            "End with a line 'The answer is \\boxed{ANSWER}.'",
        ),
    ],
)
def test_line_messages_are_unchanged(style, system):
    messages = build_messages("What is 2 + 2?", style)
    assert messages == build_messages("What is 2 + 2?", style, "line")
    assert messages[0] == {"role": "system", "content": system}
    if style == "math":
        assert messages[1:] == [
            {"role": "user", "content": "What is $\\frac{1}{2} + \\frac{1}{3}$?"},
            {
                "role": "assistant",
                "content": "\\frac{1}{2} = \\frac{3}{6}\n\\frac{1}{3} = \\frac{2}{6}\n"
                "\\frac{3}{6} + \\frac{2}{6} = \\frac{5}{6}\nThe answer is \\boxed{\\frac{5}{6}}.",
            },
            {"role": "user", "content": "What is 2 + 2?"},
        ]


@pytest.mark.parametrize("step_format", STEP_FORMATS)
@pytest.mark.parametrize("style, marker", [("numeric", "The answer is"), ("math", "\\boxed")])
def test_messages_end_with_the_question_after_few_shot(style, marker, step_format):
    messages = build_messages("What is 2 + 2?", style, step_format)
    assert messages[0]["role"] == "system" and marker in messages[0]["content"]
    assert messages[-1] == {"role": "user", "content": "What is 2 + 2?"}
    assert [m["role"] for m in messages[1:-1]] == ["user", "assistant"] * ((len(messages) - 2) // 2)
    assert all(marker in m["content"] for m in messages[1:-1] if m["role"] == "assistant")


@pytest.mark.parametrize("style", ["numeric", "math"])
def test_few_shot_turns_split_back_into_the_line_steps(style):
    """Paragraph and marker shots are the line shots re-rendered: same steps, the answer line
    joining the last step under markers."""
    line_shots = [m["content"] for m in build_messages("q", style)[1:-1] if m["role"] == "assistant"]
    for step_format in ("paragraph", "marker"):
        messages = build_messages("q", style, step_format)
        assert "blank line" in messages[0]["content"]
        shots = [m["content"] for m in messages[1:-1] if m["role"] == "assistant"]
        for line_shot, shot in zip(line_shots, shots, strict=True):
            *work, answer = split_steps(line_shot)
            expected = work + [answer]
            if step_format == "marker":
                expected = [f"Step {i}: {s}" for i, s in enumerate(work, 1)]
                expected[-1] += "\n" + answer
            assert split_steps(shot, step_format) == expected


def test_marker_math_shot_literal():
    shot = build_messages("q", "math", "marker")[2]["content"]
    assert shot == (
        "Step 1: \\frac{1}{2} = \\frac{3}{6}\n\n"
        "Step 2: \\frac{1}{3} = \\frac{2}{6}\n\n"
        "Step 3: \\frac{3}{6} + \\frac{2}{6} = \\frac{5}{6}\nThe answer is \\boxed{\\frac{5}{6}}."
    )
    assert "Step k:" in build_messages("q", "math", "marker")[0]["content"]
