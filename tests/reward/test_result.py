"""RewardResult validation and how plain-float rewards are read."""

from __future__ import annotations

import math

import pytest

from reward.result import OUTCOMES, RewardResult, as_result


@pytest.mark.parametrize(
    "value,threshold,outcome,score",
    [
        (1.0, 1.0, "correct", 1.0),  # at the threshold counts as correct
        (0.999, 1.0, "wrong", 0.999),  # just below
        (-1.0, 0.5, "wrong", -1.0),  # the paper's +-1 rewards with a 0.5 threshold
        (1, 0.5, "correct", 1.0),  # ints are numbers too
        (0.6, 0.5, "correct", 0.6),  # partial credit above a lowered threshold
    ],
)
def test_floats_are_wrapped_by_threshold(value, threshold, outcome, score):
    result = as_result(value, threshold)
    assert (result.outcome, result.score) == (outcome, score)
    assert isinstance(result.score, float)


def test_results_pass_through_unchanged():
    result = RewardResult(0.0, "unparsable", "no box")
    assert as_result(result, threshold=0.0) is result


@pytest.mark.parametrize(
    "value,error", [("1", TypeError), (None, TypeError), (True, TypeError), (math.nan, ValueError)]
)
def test_bad_returns_raise(value, error):
    with pytest.raises(error):
        as_result(value, threshold=1.0)


def test_outcome_and_score_are_validated():
    with pytest.raises(ValueError, match="outcome must be one of"):
        RewardResult(1.0, "right")
    with pytest.raises(ValueError, match="finite number"):
        RewardResult(math.inf, "correct")
    assert [RewardResult(0.0, o).correct for o in OUTCOMES] == [True, False, False, False, False]
