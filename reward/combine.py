"""Weighted sums of rewards, e.g. correctness + 0.1 x format.

The first part is the *correctness* part: its outcome is the combination's outcome (what the difficulty
classifier counts), unless some part failed ("timeout" / "error"), which then fails the whole sum because its
score is incomplete. The score is sum_i weight_i * score_i.

>>> from reward.format import format_reward
>>> from reward.numeric import numeric_reward
>>> both = WeightedReward((("numeric", numeric_reward, 1.0), ("format", format_reward, 0.1)))
>>> result = both(r"so \\boxed{7}", "7")
>>> result.score, result.outcome  # 1.0 * 1 + 0.1 * 1
(1.1, 'correct')
>>> print(result.reason)
numeric x1: correct (answer '7' = gold '7'); format x0.1: correct (format 'boxed' present)
>>> both("it is 6", "7").score  # wrong answer (1.0 * 0), and no box (0.1 * 0)
0.0
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from reward.result import FAILURES, RewardResult, as_result


@dataclass(frozen=True)
class WeightedReward:
    """parts: (name, reward fn, weight) triples; the first is the correctness part.
    threshold: reads plain-float returns of any part (``reward.result.as_result``)."""

    parts: tuple[tuple[str, Callable, float], ...]
    threshold: float = 1.0

    def __post_init__(self) -> None:
        if not self.parts:
            raise ValueError("WeightedReward.parts must name at least one reward, got ()")

    def __call__(self, completion: str, answer: str, **meta) -> RewardResult:
        return self.combine([as_result(fn(completion, answer, **meta), self.threshold) for _, fn, _ in self.parts])

    def combine(self, results: list[RewardResult]) -> RewardResult:
        """The sum's result from one result per part, in the order of ``parts``."""
        pairs = list(zip(self.parts, results, strict=True))
        score = sum(weight * result.score for (_, _, weight), result in pairs)
        outcome = next((r.outcome for r in results if r.outcome in FAILURES), results[0].outcome)
        reason = "; ".join(f"{name} x{weight:g}: {r.outcome} ({r.reason})" for (name, _, weight), r in pairs)
        return RewardResult(score, outcome, reason)
