"""Step splitting, prefixes and prompts (pure functions)."""

from __future__ import annotations

import pytest

from tasks.steps import build_messages, prefix_text, split_steps


def test_split_lines_drops_blank_lines_and_strips():
    text = "  5 + 3 = 8\n\n8 - 2 = 6  \n\nThe answer is 6.\n"
    assert split_steps(text) == ["5 + 3 = 8", "8 - 2 = 6", "The answer is 6."]


def test_split_paragraphs():
    text = "First we add.\nStill step one.\n\nThen subtract.\n\nThe answer is 6."
    assert split_steps(text, "paragraph") == ["First we add.\nStill step one.", "Then subtract.", "The answer is 6."]


def test_empty_solution_has_no_steps():
    assert split_steps("") == [] and split_steps("\n \n") == []


def test_prefix_ends_with_separator_so_rollout_starts_a_new_step():
    steps = ["a", "b", "c"]
    assert prefix_text(steps, 1) == "a\n"
    assert prefix_text(steps, 2) == "a\nb\n"
    assert prefix_text(steps, 2, "paragraph") == "a\n\nb\n\n"
    with pytest.raises(ValueError):
        prefix_text(steps, 0)
    with pytest.raises(ValueError):
        prefix_text(steps, 4)


@pytest.mark.parametrize("style, marker", [("numeric", "The answer is"), ("math", "\\boxed")])
def test_messages_end_with_the_question_after_few_shot(style, marker):
    messages = build_messages("What is 2 + 2?", style)
    assert messages[0]["role"] == "system" and marker in messages[0]["content"]
    assert messages[-1] == {"role": "user", "content": "What is 2 + 2?"}
    assert [m["role"] for m in messages[1:-1]] == ["user", "assistant"] * ((len(messages) - 2) // 2)
    assert all(marker in m["content"] for m in messages[1:-1] if m["role"] == "assistant")
