"""score_one: what a worker sends back for one call, whatever the reward does."""

from __future__ import annotations

import math

from reward.result import RewardResult
from reward.worker import REASON_CHARS, score_one


def _returns(value):
    return lambda completion, answer, **meta: value


def _raises(completion, answer, **meta):
    raise KeyError("metadata")


def test_result_passes_through():
    assert score_one(_returns(RewardResult(0.5, "wrong", "half")), "c", "a", {}, 1.0) == (0.5, "wrong", "half")


def test_float_uses_threshold():
    assert score_one(_returns(0.7), "c", "a", {}, 0.5) == (0.7, "correct", "float reward 0.7 >= threshold 0.5")


def test_exception_becomes_error():
    assert score_one(_raises, "c", "a", {}, 1.0) == (0.0, "error", "KeyError: 'metadata'")


def test_bad_return_becomes_error():
    score, outcome, reason = score_one(_returns(math.nan), "c", "a", {}, 1.0)
    assert (score, outcome) == (0.0, "error") and "non-finite" in reason
    assert score_one(_returns(None), "c", "a", {}, 1.0)[1] == "error"


def test_meta_reaches_the_reward_and_reasons_are_truncated():
    def echo(completion, answer, **meta):
        return RewardResult(1.0, "correct", meta["note"] * 1000)

    score, outcome, reason = score_one(echo, "c", "a", {"note": "x"}, 1.0)
    assert (score, outcome, len(reason)) == (1.0, "correct", REASON_CHARS)
