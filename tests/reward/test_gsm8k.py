"""gsm8k_reward and gold_number: GSM8K's "#### answer" form."""

from __future__ import annotations

import pytest

from reward.gsm8k import gold_number, gsm8k_reward

SOLUTION = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips.\n#### 72"

ROWS = [
    # completion, gold, kwargs, outcome, score, why
    ("48 + 24 = 72\n#### 72", SOLUTION, {}, "correct", 1.0, "gold given as GSM8K's full solution"),
    ("48 + 24 = 72\n#### 72", "72", {}, "correct", 1.0, "gold given as the bare number"),
    ("#### 72.00", "72", {}, "correct", 1.0, "trailing zeros"),
    ("#### $1,080", "1080", {}, "correct", 1.0, "currency and commas"),
    ("#### 1080 dollars", "1080", {}, "correct", 1.0, "unit after the number"),
    ("#### 71", SOLUTION, {}, "wrong", 0.0, "different number"),
    ("#### 70\nno wait\n#### 72", "72", {}, "correct", 1.0, "the last marker is the answer"),
    ("She sold 72 clips.", "72", {}, "unparsable", 0.0, "no #### line"),
    ("#### seventy-two", "72", {}, "unparsable", 0.0, "a word, not a number"),
    ("She sold 72 clips.", "72", {"extraction": "boxed_or_last_number"}, "correct", 1.0, "lenient extraction"),
    ("#### 72", "#### many", {}, "error", 0.0, "gold without a number is a data error"),
]


@pytest.mark.parametrize("completion,gold,kwargs,outcome,score,why", ROWS, ids=[r[5] for r in ROWS])
def test_gsm8k_reward_table(completion, gold, kwargs, outcome, score, why):
    result = gsm8k_reward(completion, gold, **kwargs)
    assert (result.outcome, result.score) == (outcome, score), f"{why}: {result.reason}"


@pytest.mark.parametrize("answer,expected", [(SOLUTION, "72"), ("18", "18"), ("a\n#### 1\n#### 2", "2")])
def test_gold_number(answer, expected):
    assert gold_number(answer) == expected
