r"""Scoring in the calling process before the worker pool: what a reward can decide cheaply never leaves it.

A reward worker call costs a pipe round trip, and math-verify ~1 ms of sympy per completion; a plain answer
("72", "3/4", "B") costs microseconds to decide exactly (``reward.fast``). ``build_prefilter(specs)`` pairs
each built-in reward with its *fast part*, a function with the same arguments that returns the reward's own
result, or None where it needs the slow part:

    math                              ``reward.math.math_fast``: no answer found, empty gold, plain answers
    numeric, exact, gsm8k, format     the reward itself (standard library, bounded cost)

The executor runs the prefilter on every completion in the driver and sends only the undecided ones to the
workers, where the full reward runs with the per-call timeout. Verdicts are the same either way (the fast
part *is* the reward on its domain); a fast part that raises is treated as undecided, so its worker reports
the same "error". A sum of rewards (``reward.combine``) is decided here only when every part is.
Custom rewards (import paths) and ``rgym`` have no fast part: with them every completion goes to a worker.

>>> from reward.registry import RewardSpec
>>> decide = build_prefilter((RewardSpec("math", {"extraction": "boxed_or_last_number"}),), threshold=1.0)
>>> decide("so the answer is 12 apples.", "12", {})
(1.0, 'correct', "answer '12 apples' is equivalent to gold '12'")
>>> decide(r"\boxed{2\sqrt{2}}", r"\sqrt{8}", {}) is None    # symbolic: left to math-verify in a worker
True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from reward.combine import WeightedReward
from reward.format import format_reward
from reward.gsm8k import gsm8k_reward
from reward.math import math_fast, math_reward
from reward.numeric import exact_reward, numeric_reward
from reward.registry import BoundReward, RewardSpec, bind_reward
from reward.result import as_result
from reward.worker import REASON_CHARS

FAST_PARTS: dict[Callable, Callable] = {
    math_reward: math_fast,
    numeric_reward: numeric_reward,
    exact_reward: exact_reward,
    gsm8k_reward: gsm8k_reward,
    format_reward: format_reward,
}
MAX_COMPLETION_CHARS = 16384  # longer completions go to a worker, where the timeout bounds every cost

Raw = tuple[float, str, str]  # (score, outcome, reason), as the worker pool returns them


@dataclass(frozen=True)
class Prefilter:
    """parts: the bound fast part of each reward spec; combined: the specs' weighted sum (None for one
    spec of weight 1, scored as it is)."""

    parts: tuple[BoundReward, ...]
    combined: WeightedReward | None
    threshold: float

    def __call__(self, completion: str, answer: str, meta: dict) -> Raw | None:
        """(score, outcome, reason) when every part decides, else None (the completion goes to a worker)."""
        if len(completion) > MAX_COMPLETION_CHARS:
            return None
        results = []
        for part in self.parts:
            try:
                value = part(completion, answer, **meta)
                if value is None:
                    return None
                results.append(as_result(value, self.threshold))
            # Deliberately broad: the worker runs the same reward and reports the exception as "error".
            except Exception:  # noqa: BLE001
                return None
        result = results[0] if self.combined is None else self.combined.combine(results)
        return result.score, result.outcome, result.reason[:REASON_CHARS]


def build_prefilter(specs: Sequence[RewardSpec], threshold: float) -> Prefilter | None:
    """The prefilter of these specs (bound like ``reward.registry.build_reward``), or None if a spec has no
    fast part."""
    bound = [bind_reward(spec) for spec in specs]
    if any(b.fn not in FAST_PARTS for b in bound):
        return None
    parts = tuple(BoundReward(FAST_PARTS[b.fn], b.kwargs, b.meta_keys) for b in bound)
    single = len(specs) == 1 and specs[0].weight == 1.0
    combined = (
        None
        if single
        else WeightedReward(tuple((s.fn, p, s.weight) for s, p in zip(specs, parts, strict=True)), threshold=threshold)
    )
    return Prefilter(parts, combined, threshold)
