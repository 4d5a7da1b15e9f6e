"""format_reward: one table per style, with the reason for each row."""

from __future__ import annotations

import pytest

from reward.format import FORMAT_STYLES, format_reward

ROWS = [
    # completion, style, score, why
    (r"so \boxed{3}", "boxed", 1.0, "a box"),
    (r"so \boxed{}", "boxed", 0.0, "an empty box does not count"),
    ("so 3", "boxed", 0.0, "no box"),
    ("<answer>3</answer>", "answer_tag", 1.0, "answer tag"),
    ("<answer> </answer>", "answer_tag", 0.0, "blank answer tag"),
    ("<think>3 = 1 + 2</think>\n<answer>3</answer>", "think_answer", 1.0, "R1 format"),
    ("  <think>a</think><answer>3</answer>\n", "think_answer", 1.0, "outer whitespace is fine"),
    ("<answer>3</answer>", "think_answer", 0.0, "missing think block"),
    ("<think>a</think><answer>3</answer> extra", "think_answer", 0.0, "text after the answer"),
    ("<answer>3</answer><think>a</think>", "think_answer", 0.0, "wrong order"),
    ("<think>a</think><answer></answer>", "think_answer", 0.0, "empty answer"),
    ("1 + 2 = 3\n#### 3", "gsm8k", 1.0, "GSM8K marker"),
    ("1 + 2 = 3", "gsm8k", 0.0, "no marker"),
]


@pytest.mark.parametrize("completion,style,score,why", ROWS, ids=[r[3] for r in ROWS])
def test_format_reward_table(completion, style, score, why):
    result = format_reward(completion, "ignored gold", style=style)
    assert result.score == score, why
    assert result.outcome == ("correct" if score == 1.0 else "wrong")


def test_every_style_has_rows():
    assert {row[1] for row in ROWS} == set(FORMAT_STYLES)


def test_unknown_style_lists_valid_names():
    with pytest.raises(ValueError, match=r"style must be one of \('boxed', 'answer_tag', 'think_answer', 'gsm8k'\)"):
        format_reward("x", style="xml")
