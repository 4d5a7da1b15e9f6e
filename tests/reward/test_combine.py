"""WeightedReward: the weighted score and which part decides the outcome."""

from __future__ import annotations

import pytest

from reward.combine import WeightedReward
from reward.format import format_reward
from reward.numeric import numeric_reward
from reward.result import RewardResult


def _fixed(result):
    return lambda completion, answer, **meta: result


ROWS = [
    # completion, gold, score, outcome, why  (weights: numeric 1.0, format 0.25)
    (r"\boxed{7}", "7", 1.25, "correct", "1.0 * 1 + 0.25 * 1"),
    ("it is 7", "7", 1.0, "correct", "1.0 * 1 + 0.25 * 0: right but unboxed"),
    (r"\boxed{6}", "7", 0.25, "wrong", "1.0 * 0 + 0.25 * 1: boxed but wrong; the outcome is numeric's"),
    ("no idea", "7", 0.0, "unparsable", "1.0 * 0 + 0.25 * 0; numeric's outcome"),
]


@pytest.mark.parametrize("completion,gold,score,outcome,why", ROWS, ids=[r[4] for r in ROWS])
def test_correctness_plus_format(completion, gold, score, outcome, why):
    combined = WeightedReward((("numeric", numeric_reward, 1.0), ("format", format_reward, 0.25)))
    result = combined(completion, gold)
    assert (result.score, result.outcome) == (score, outcome), why


def test_a_failing_secondary_part_fails_the_sum():
    # The score would be missing a term, so the outcome is the failure, not the primary's "correct".
    primary, secondary = _fixed(RewardResult(1.0, "correct")), _fixed(RewardResult(0.0, "error"))
    combined = WeightedReward((("a", primary, 1.0), ("b", secondary, 0.5)))
    assert combined("x", "y").outcome == "error"


def test_float_parts_use_the_threshold():
    # 0.5 * 2.0 + 0.6 * 1.0 = 1.6; the primary (0.5) is below threshold 1.0 -> "wrong"
    combined = WeightedReward((("a", _fixed(0.5), 2.0), ("b", _fixed(0.6), 1.0)), threshold=1.0)
    result = combined("x", "y")
    assert (result.score, result.outcome) == (1.6, "wrong")
    assert WeightedReward((("a", _fixed(0.5), 1.0),), threshold=0.5)("x", "y").outcome == "correct"


def test_empty_parts_rejected():
    with pytest.raises(ValueError, match="at least one reward"):
        WeightedReward(())
