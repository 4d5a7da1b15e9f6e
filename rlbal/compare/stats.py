"""Statistics of a comparison (numpy only): per-prompt scores of held-out evaluations, means with 95 %
bootstrap intervals over seeds and prompts, and paired differences to a baseline.

A method was run with S seeds; run s was scored on the N_s held-out prompts of its seed, each prompt getting a
value x (its pass@1, pass@k or mean@k estimate). The method's score is the mean over seeds of the per-run
means over prompts. Its uncertainty comes from both sources, so the bootstrap is two-level: draw S seeds with
replacement, then, for each drawn seed, its N_s prompts with replacement, and average:

    score* = mean_{s in seeds*} mean_{i in prompts*(s)} x_{s,i}

The paired difference to a baseline uses the *same* draws for both methods (the same seed ran both on the same
prompts: the per-prompt difference d = x_method - x_base is what is resampled), so the shared variation of
prompts and seeds cancels. Intervals are percentile intervals of B draws from a seeded generator.

    >>> x = {0: np.array([1.0, 0.0]), 1: np.array([1.0, 1.0])}
    >>> round(method_mean(x), 3), bootstrap_ci(x, draws=200, seed=0)[0] <= 0.75 <= bootstrap_ci(x, draws=200, seed=0)[1]
    (0.75, True)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Scores = dict[int, np.ndarray]  # seed -> (N_s,) per-prompt value of one run


def method_mean(x: Scores) -> float:
    """Mean over seeds of the per-run means over prompts."""
    return float(np.mean([v.mean() for v in x.values()]))


def bootstrap_means(x: Scores, draws: int, rng: np.random.Generator) -> np.ndarray:
    """(draws,) two-level bootstrap replicates of `method_mean` (seeds, then prompts within each drawn seed).

    Each replicate takes len(x) seed positions from rng.integers, then for each position in order N_s prompt
    positions from rng.integers: the exact order of draws, so a test can repeat them by hand.
    """
    seeds = sorted(x)
    out = np.empty(draws)
    for b in range(draws):
        picks = rng.integers(0, len(seeds), len(seeds))
        means = []
        for j in picks:
            v = x[seeds[j]]
            means.append(v[rng.integers(0, v.size, v.size)].mean())
        out[b] = np.mean(means)
    return out


def bootstrap_ci(x: Scores, draws: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of `bootstrap_means` (a fixed seed: the report is reproducible)."""
    reps = bootstrap_means(x, draws, np.random.default_rng(seed))
    a = (1.0 - level) / 2
    return float(np.quantile(reps, a)), float(np.quantile(reps, 1 - a))


def paired(x: Scores, base: Scores) -> Scores:
    """seed -> (N_s,) per-prompt differences x - base over the seeds both have (same prompts per seed)."""
    common = sorted(set(x) & set(base))
    if not common:
        raise ValueError("paired: the two methods share no seed")
    for s in common:
        if x[s].shape != base[s].shape:
            raise ValueError(
                f"paired: seed {s} has {x[s].size} prompts against the baseline's {base[s].size}; "
                "a paired difference needs the same held-out prompts"
            )
    return {s: x[s] - base[s] for s in common}


@dataclass(frozen=True)
class Estimate:
    """A mean with its 95 % interval and the number of runs behind it."""

    mean: float
    low: float
    high: float
    runs: int

    def __str__(self) -> str:
        return f"{self.mean:.3f} [{self.low:.3f}, {self.high:.3f}]"

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def estimate(x: Scores, draws: int = 2000, seed: int = 0) -> Estimate:
    """`method_mean` with its `bootstrap_ci`."""
    lo, hi = bootstrap_ci(x, draws, seed)
    return Estimate(method_mean(x), lo, hi, len(x))
