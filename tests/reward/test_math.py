"""math_reward: a table of (completion, answer, extraction, expected outcome, expected score) with reasons."""

from __future__ import annotations

import pytest

from reward.math import math_reward

ROWS = [
    # completion, gold, extraction, outcome, score, why
    (r"so \boxed{42}.", "42", "boxed", "correct", 1.0, "same integer"),
    (r"\boxed{\frac{1}{2}}", "0.5", "boxed", "correct", 1.0, "fraction equals decimal"),
    (r"\boxed{\dfrac{3}{4}}", "0.75", "boxed", "correct", 1.0, r"\dfrac is a fraction too"),
    (r"\boxed{2\sqrt{2}}", r"\sqrt{8}", "boxed", "correct", 1.0, "symbolic: 2 sqrt 2 = sqrt 8"),
    (r"\boxed{x^2 - 1}", "(x-1)(x+1)", "boxed", "correct", 1.0, "expanded vs factored polynomial"),
    (r"\boxed{\sin^2 x + \cos^2 x}", "1", "boxed", "correct", 1.0, "trig identity simplifies to 1"),
    (r"\boxed{1,000}", "1000", "boxed", "correct", 1.0, "thousands separator"),
    (r"$\boxed{x = 3}$", "3", "boxed", "correct", 1.0, "an equation's right-hand side is the answer"),
    (r"\boxed{\{2,3\}}", r"\{3,2\}", "boxed", "correct", 1.0, "sets are unordered"),
    (r"\boxed{[0, 1)}", "[0,1)", "boxed", "correct", 1.0, "same half-open interval"),
    (r"\boxed{(0, 1]}", "[0,1)", "boxed", "wrong", 0.0, "interval with the other ends open"),
    (r"\boxed{41}", "42", "boxed", "wrong", 0.0, "off by one"),
    (r"\boxed{0.333}", "1/3", "boxed", "wrong", 0.0, "0.333 is not 1/3 at math-verify's 6-digit rounding"),
    (r"\boxed{3.14159}", r"\pi", "boxed", "wrong", 0.0, "an approximation of pi is not pi"),
    (r"\boxed{1} no wait, \boxed{2}", "2", "boxed", "correct", 1.0, "the last box is the answer"),
    (r"\boxed{2} no wait, \boxed{1}", "2", "boxed", "wrong", 0.0, "the last box is the answer, and it is wrong"),
    ("The answer is 42", "42", "boxed", "unparsable", 0.0, "strict mode wants a box"),
    (r"\boxed{}", "3", "boxed", "unparsable", 0.0, "an empty box"),
    (r"so \boxed{5", "5", "boxed", "unparsable", 0.0, "box cut off by the length limit"),
    (r"\boxed{\text{}}", "3", "boxed", "unparsable", 0.0, "math-verify reads nothing in an empty \\text{}"),
    ("The answer is 42", "42", "boxed_or_last_number", "correct", 1.0, "lenient: 'answer is X'"),
    ("the answer is: 12 apples.", "12", "boxed_or_last_number", "correct", 1.0, "lenient: units after the number"),
    ("3 + 4 = 7, so 7 apples", "7", "boxed_or_last_number", "correct", 1.0, "lenient: last number"),
    ("3 + 4 = 7, so 8 apples", "7", "boxed_or_last_number", "wrong", 0.0, "lenient: last number is wrong"),
    ("I have no idea", "7", "boxed_or_last_number", "unparsable", 0.0, "lenient finds nothing either"),
    ("24 clips\n#### 72", "72", "gsm8k", "correct", 1.0, "GSM8K marker"),
    (r"<answer>\frac{3}{4}</answer>", "0.75", "answer_tag", "correct", 1.0, "answer tag with LaTeX inside"),
    ("<answer>north-east</answer>", "north-east", "answer_tag", "correct", 1.0, "text answers compare as strings"),
    (r"\boxed{7}", "", "boxed", "error", 0.0, "an empty gold answer is a data error"),
    (r"\boxed{7}", "$ $", "boxed", "error", 0.0, "a gold that is only delimiters is empty too"),
]


@pytest.mark.parametrize("completion,gold,extraction,outcome,score,why", ROWS, ids=[r[5] for r in ROWS])
def test_math_reward_table(completion, gold, extraction, outcome, score, why):
    result = math_reward(completion, gold, extraction=extraction)
    assert (result.outcome, result.score) == (outcome, score), f"{why}: {result.reason}"


def test_extra_meta_is_ignored():
    # The data layer passes every prompt's meta; keys the math reward does not know must not matter.
    assert math_reward(r"\boxed{4}", "4", difficulty=0.3, task="chain_sum").outcome == "correct"


def test_unknown_extraction_raises():
    with pytest.raises(ValueError, match="extraction must be one of"):
        math_reward(r"\boxed{4}", "4", extraction="last")
