"""Simulation harness: the controllers on synthetic prompts with known success probabilities (CPU, seconds).

Each synthetic prompt i has a per-response success probability p_i; a step draws a batch uniformly without
replacement, asks the controllers for bins / counts / weights, draws n_correct ~ Binomial(counts_i, p_i)
(0/1 rewards), computes the chosen reward-derived loss signal and feeds the result back. Used by the tests
to show that the classifier recovers the true difficulty, that Rollout-GDRO spends exactly the budget and
moves it toward high-variance classes, that its dual price settles, and that Prompt-GDRO concentrates on
the classes with the highest loss.

    >>> prompts = SyntheticPrompts.at_bin_centres(per_bin=4, edges=np.array([0.5]), n_ref=4)
    >>> prompts.pass_at(4).round(2).tolist()
    [0.25, 0.25, 0.25, 0.25, 0.75, 0.75, 0.75, 0.75]
    >>> sim = Simulator(prompts, Controllers.from_configs(ClassifierConfig(num_bins=2)), SimConfig(batch_size=8))
    >>> trace = sim.run(3)
    >>> trace.counts_SN.shape, int(trace.counts_SN.sum())
    ((3, 8), 96)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from rlbal.controllers.classifier import ClassifierConfig, bin_of
from rlbal.controllers.composite import Controllers
from rlbal.controllers.records import REWARD_SIGNALS, Allocation, PromptResult, reward_signal, rng_from_state, rng_state


@dataclass(frozen=True)
class SyntheticPrompts:
    """p_P: (P,) per-response success probability of each synthetic prompt (its id is its index)."""

    p_P: np.ndarray

    def __post_init__(self) -> None:
        p = np.asarray(self.p_P, np.float64)
        if p.ndim != 1 or p.size == 0 or p.min() < 0 or p.max() > 1:
            raise ValueError("SyntheticPrompts.p_P must be a non-empty 1-D array of probabilities in [0, 1]")
        object.__setattr__(self, "p_P", p)

    @classmethod
    def at_bin_centres(cls, per_bin: int, edges: np.ndarray, n_ref: int) -> "SyntheticPrompts":
        """per_bin prompts per bin whose pass@n_ref sits at the bin's centre (so its true bin is unambiguous)."""
        bounds = np.concatenate([[0.0], edges, [1.0]])
        centre_B = (bounds[:-1] + bounds[1:]) / 2
        pass_P = np.repeat(centre_B, per_bin)
        return cls(1.0 - (1.0 - pass_P) ** (1.0 / n_ref))  # invert pass@n = 1 - (1 - p)^n

    def __len__(self) -> int:
        return int(self.p_P.size)

    def pass_at(self, n: int) -> np.ndarray:
        """(P,) probability that at least one of n rollouts is correct."""
        return 1.0 - (1.0 - self.p_P) ** n

    def true_bins(self, edges: np.ndarray, n: int) -> np.ndarray:
        """(P,) bin of the exact pass@n: where a classifier fed n rollouts per visit should converge."""
        return bin_of(self.pass_at(n), edges)


@dataclass(frozen=True)
class SimConfig:
    """One simulated run."""

    batch_size: int = 64
    """Prompts per step (drawn uniformly without replacement)."""
    signal: str = "failure_rate"
    """Reward-derived loss signal fed to the controllers (one of records.REWARD_SIGNALS)."""
    signal_scale: float = 1.0
    """Multiplier on the signal (sets how sharp the exponential weights are for a given eta)."""
    seed: int = 0
    """Seed of the simulator's RNG (batches and Bernoulli outcomes)."""

    def __post_init__(self) -> None:
        if self.signal not in REWARD_SIGNALS:
            raise ValueError(f"SimConfig.signal must be one of {REWARD_SIGNALS}, got {self.signal!r}")
        if self.batch_size < 1:
            raise ValueError(f"SimConfig.batch_size must be >= 1, got {self.batch_size}")


@dataclass(frozen=True)
class SimTrace:
    """What each of S steps decided and observed.

    ids_SN, bins_SN, counts_SN: (S, N) int64; weights_SN: (S, N) float64; n_correct_SN: (S, N) int64
    mu_S: (S,) Rollout-GDRO dual price after the step (nan without Rollout-GDRO)
    preferred_S: (S,) the bandits' preferred mean at decision time (nan without Rollout-GDRO)
    q_SC: (S, C) Prompt-GDRO distribution over all classes after the step (nan without Prompt-GDRO)
    """

    ids_SN: np.ndarray
    bins_SN: np.ndarray
    counts_SN: np.ndarray
    weights_SN: np.ndarray
    n_correct_SN: np.ndarray
    mu_S: np.ndarray
    preferred_S: np.ndarray
    q_SC: np.ndarray


class Simulator:
    """Drives a `Controllers` object on synthetic prompts; its RNG is part of its state_dict."""

    def __init__(self, prompts: SyntheticPrompts, controllers: Controllers, config: SimConfig = SimConfig()) -> None:
        if config.batch_size > len(prompts):
            raise ValueError(f"SimConfig.batch_size={config.batch_size} exceeds the {len(prompts)} prompts")
        self.prompts, self.controllers, self.config = prompts, controllers, config
        self.rng = np.random.default_rng(config.seed)

    def step(self) -> tuple[Allocation, PromptResult, float]:
        """One decide -> Bernoulli rollouts -> observe round: (Allocation, PromptResult, preferred mean).

        The preferred mean (the Rollout-GDRO dual's target; nan without it) is taken between decide and
        observe, from the arm distributions the allocation was made with.
        """
        ids_N = self.rng.choice(len(self.prompts), size=self.config.batch_size, replace=False)
        alloc = self.controllers.decide(ids_N)
        ro = self.controllers.rollout
        preferred = np.nan if ro is None else ro.preferred_mean(np.bincount(alloc.bins, minlength=ro.num_classes))
        n_N = alloc.counts
        k_N = self.rng.binomial(n_N, self.prompts.p_P[ids_N])
        var_N = k_N * (n_N - k_N) / (n_N * np.maximum(n_N - 1, 1))  # unbiased variance of 0/1 rewards
        signal_N = self.config.signal_scale * reward_signal(self.config.signal, k_N, n_N, k_N / n_N, var_N)
        result = PromptResult(ids_N, alloc.bins, n_N, k_N, k_N / n_N, signal_N)
        self.controllers.observe(result)
        return alloc, result, preferred

    def run(self, steps: int) -> SimTrace:
        """`steps` steps, stacked into a trace."""
        ro, pg = self.controllers.rollout, self.controllers.prompt_gdro
        no_q = np.full(self.controllers.classifier.num_classes, np.nan)
        rows = []
        for _ in range(steps):
            alloc, result, preferred = self.step()
            mu = np.nan if ro is None else ro.metrics()["controller/rollout_gdro/dual_mu"]
            q = no_q if pg is None else pg.distribution()
            rows.append((alloc.ids, alloc.bins, alloc.counts, alloc.weights, result.n_correct, mu, preferred, q))
        return SimTrace(*(np.asarray(col) for col in zip(*rows)))

    def state_dict(self) -> dict[str, Any]:
        return {"kind": "simulator", "rng": rng_state(self.rng), "controllers": self.controllers.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("kind") != "simulator":
            raise ValueError(f"expected a 'simulator' checkpoint, got kind={state.get('kind')!r}")
        self.rng = rng_from_state(state["rng"])
        self.controllers.load_state_dict(state["controllers"])
