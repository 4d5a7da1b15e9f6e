"""The reward contract: what a reward function returns and how plain floats are read.

A reward function is any callable ``fn(completion: str, answer: str, **meta) -> RewardResult | float``.
It returns a score plus an *outcome*, one of ``OUTCOMES``; the difficulty classifier consumes
``outcome == "correct"``, and timeouts / errors / unparsable answers are counted on their own instead of
hiding in a silent 0.

>>> RewardResult(1.0, "correct", "matches 42")
RewardResult(score=1.0, outcome='correct', reason='matches 42')
>>> as_result(0.25, threshold=1.0)
RewardResult(score=0.25, outcome='wrong', reason='float reward 0.25 < threshold 1.0')
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real
from typing import Protocol

OUTCOMES = ("correct", "wrong", "unparsable", "timeout", "error")
# Outcomes produced by the executor, never by a well-behaved reward on its own.
FAILURES = ("timeout", "error")


@dataclass(frozen=True)
class RewardResult:
    """One scored completion.

    score:   the scalar reward used for advantages (finite).
    outcome: one of OUTCOMES; "correct" is what the difficulty classifier counts as a success.
    reason:  one short human-readable line (extracted answer, exception text, ...), for logs.
    """

    score: float
    outcome: str
    reason: str = ""

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"RewardResult.outcome must be one of {OUTCOMES}, got {self.outcome!r}")
        if isinstance(self.score, bool) or not isinstance(self.score, Real) or not math.isfinite(self.score):
            raise ValueError(f"RewardResult.score must be a finite number, got {self.score!r}")
        object.__setattr__(self, "score", float(self.score))

    @property
    def correct(self) -> bool:
        return self.outcome == "correct"


class RewardFn(Protocol):
    """The shape every reward (built-in or plugged in by import path) has."""

    def __call__(self, completion: str, answer: str, **meta) -> RewardResult | float: ...


def as_result(value: RewardResult | float, threshold: float) -> RewardResult:
    """Read a reward's return value: a RewardResult passes through, a number becomes correct/wrong.

    >>> as_result(1, threshold=1.0).outcome
    'correct'
    >>> as_result(RewardResult(0.0, "unparsable", "no box"), threshold=1.0).outcome
    'unparsable'
    >>> as_result("1", threshold=1.0)
    Traceback (most recent call last):
    ...
    TypeError: reward returned str ('1'); expected RewardResult or a number
    """
    if isinstance(value, RewardResult):
        return value
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"reward returned {type(value).__name__} ({value!r}); expected RewardResult or a number")
    score = float(value)
    if not math.isfinite(score):
        raise ValueError(f"reward returned a non-finite score {score!r}")
    if score >= threshold:
        return RewardResult(score, "correct", f"float reward {score!r} >= threshold {threshold!r}")
    return RewardResult(score, "wrong", f"float reward {score!r} < threshold {threshold!r}")
