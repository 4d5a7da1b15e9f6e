"""Rollout-GDRO: how many rollouts each difficulty class gets, under a fixed mean budget n_bar per prompt.

GDRO paper section 3.3 (arXiv 2601.19280): per-class arms n_min..n_max, a Lagrangian price mu on compute,
and an exact per-step budget floor(N n_bar). Every allocator reads the same per-class outcome statistics,
updated from *every* generated and scored group (kept by online filtering or not):

    m1_b = EMA of k/n,   m2_b = EMA of k(k-1)/(n(n-1))      (unbiased for E[p], E[p^2] at any group size)

so a class's estimates do not depend on how many rollouts its prompts were given. Allocators (`allocator`):

'bandit' (default): exponential weights over each class's arms with full-information arm values
    U_b(n) = -(v_b / v_ref) n_bar^2 / n,   v_b = m1_b - m2_b (within-prompt variance), v_ref = batch mean,
    i.e. minus the class's squared standard error (Theorem 4.2's objective). Arm distributions
    p_b(n) = (1-gamma) softmax(eta (U_b(n) - mu n)) + gamma/A; the price mu is solved each step so that the
    classes' expected arms E_{p_b}[n] spend exactly the budget, and those expected arms, rounded with the
    exact total, are the counts. Every arm is scored every step (no unplayed arms, no stale scores), so the
    allocation moves smoothly with the statistics; equal statistics give equal targets, i.e. n_bar for all.
    As eta grows this approaches the square-root rule.
'sqrt' (Theorem 4.2, Neyman): n_b = clip(lam sqrt(v_b), n_min, n_max) at mean n_bar, solved exactly.
'knapsack' (Knapsack RL, arXiv 2509.25849, the anchor): the exact DP maximises sum_b c_b V_b(n_b) with
    V_b(n) = E[(1 - p^n - (1-p)^n) p (1-p)^2] under a Beta fit of the class's p.

Why not the paper's bandit feedback: one played arm per class and step, fed the clipped surrogate, learns
nothing (the surrogate's per-prompt mean is 0 at ratio 1) and a price applied through the exploration
mixture makes the most probable joint allocation a corner one (2 <-> 12 flicker); see docs/controllers.md.

    >>> r = RolloutGDRO(RolloutGDROConfig(), num_classes=3)
    >>> r.allocate([0, 0, 1, 2]).tolist()                   # no outcomes yet: equal priors -> uniform
    [4, 4, 4, 4]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np

from rlbal.controllers.allocation import (
    apportion,
    fill_to_total,
    joint_allocation,
    knapsack_values,
    outcome_moments,
    solve_price,
    sqrt_allocation,
    variance_values,
)
from rlbal.controllers.records import PromptResult, check_state, class_names, config_dict

Allocator = Literal["bandit", "sqrt", "knapsack"]
ALLOCATORS: tuple[str, ...] = get_args(Allocator)
_DP_RANGE = 40.0  # nats the knapsack values are scaled into for the DP's integer keys


@dataclass(frozen=True)
class RolloutGDROConfig:
    """Rollout-count allocation. Arms 2..12 and n_bar 4 are the paper's; eta is on normalised arm values."""

    __pydantic_config__ = {"extra": "forbid"}  # unknown keys in a recipe are errors

    allocator: Allocator = "bandit"
    """'bandit': exponential weights over arms valued by -v/n, priced to the exact budget. 'sqrt': Neyman rule
    n_b ~ sqrt(v_b). 'knapsack': exact DP on Knapsack RL's value (the anchor the others are compared with)."""
    n_min: int = 2
    """Fewest rollouts per prompt (>= 2: no singleton groups)."""
    n_max: int = 12
    """Most rollouts per prompt (paper: 3 x the base 4)."""
    n_bar: float = 4.0
    """Budget: mean rollouts per prompt; a batch of N prompts gets floor(N * n_bar) rollouts in total.
    Derived from rollout.n when a recipe leaves it out."""
    eta: float = 4.0
    """Bandit: sharpness of the arm distributions. Arm values are in units where a class of average variance
    at n_bar rollouts is worth -n_bar, so eta ~ 4 spreads each class over 2-3 neighbouring arms (larger:
    closer to the square-root rule, less smoothing)."""
    gamma: float = 0.01
    """Bandit: uniform mixing over the arms (pulls every class's expected arm slightly toward the middle)."""
    stats_ema_beta: float = 0.12
    """EMA rate of each class's outcome statistics (weight of the newest step)."""
    var_prior: float = 0.25
    """Within-prompt variance assumed for a class never observed (0.25 = the Bernoulli maximum: unknown classes
    get budget); its mean pass rate is taken as 0.5."""

    def __post_init__(self) -> None:
        if self.allocator not in ALLOCATORS:
            raise ValueError(f"RolloutGDROConfig.allocator must be one of {ALLOCATORS}, got {self.allocator!r}")
        checks = (
            ("n_min", self.n_min >= 2, ">= 2"),
            ("n_max", self.n_min <= self.n_max <= 64, "in [n_min, 64]"),
            ("n_bar", self.n_min <= self.n_bar <= self.n_max, "in [n_min, n_max]"),
            ("eta", self.eta > 0, "> 0"),
            ("gamma", 0 <= self.gamma < 1, "in [0, 1)"),
            ("stats_ema_beta", 0 < self.stats_ema_beta <= 1, "in (0, 1]"),
            ("var_prior", 0 <= self.var_prior <= 0.25, "in [0, 0.25]"),
        )
        for name, ok, rule in checks:
            if not ok:
                raise ValueError(f"RolloutGDROConfig.{name} must be {rule}, got {getattr(self, name)!r}")

    @property
    def arms(self) -> np.ndarray:
        """(A,) the rollout counts n_min..n_max."""
        return np.arange(self.n_min, self.n_max + 1)


class RolloutGDRO:
    """Per-class outcome statistics -> rollout count per prompt. `num_classes` from the classifier."""

    def __init__(
        self,
        config: RolloutGDROConfig = RolloutGDROConfig(),
        num_classes: int = 10,
        names: tuple[str, ...] | None = None,
    ) -> None:
        if num_classes < 1:
            raise ValueError(f"RolloutGDRO.num_classes must be >= 1, got {num_classes}")
        self.config = config
        self.num_classes = num_classes
        self.class_names = names or class_names(num_classes)
        if len(self.class_names) != num_classes:
            raise ValueError(f"RolloutGDRO: {len(self.class_names)} class names for {num_classes} classes")
        self.m1 = np.full(num_classes, 0.5)  # E[p] per class
        self.m2 = np.full(num_classes, 0.5 - config.var_prior)  # E[p^2] per class: v = m1 - m2 = var_prior
        self.seen = np.zeros(num_classes, bool)
        self.mu = 0.0  # the price of the last allocation (warm start of the next solve)
        self._last: dict[str, Any] = {
            "bins": np.zeros(0, np.int64),
            "n": np.zeros(0, np.int64),
            "total": 0,
            "price": 0.0,
            "delta": 0.0,
            "n_class": np.full(num_classes, np.nan),
        }

    @property
    def var(self) -> np.ndarray:
        """(C,) within-prompt success variance E[p(1-p)] per class."""
        return np.maximum(self.m1 - self.m2, 0.0)

    def _bins(self, bins) -> np.ndarray:
        bins_N = np.asarray(bins, np.int64).reshape(-1)
        if bins_N.size and (bins_N.min() < 0 or bins_N.max() >= self.num_classes):
            raise ValueError(
                f"RolloutGDRO: bins must lie in [0, {self.num_classes}), got {bins_N.min()}..{bins_N.max()}"
            )
        return bins_N

    def budget(self, n_prompts: int) -> int:
        """Total rollouts for a batch of n_prompts: floor(n_prompts * n_bar)."""
        return int(np.floor(n_prompts * self.config.n_bar + 1e-9))

    def arm_values(self, classes=None) -> np.ndarray:
        """(K, A) what each arm is worth to each class (all classes, or the given ones) under the allocator."""
        c = self.config
        cls = np.arange(self.num_classes) if classes is None else np.asarray(classes, np.int64)
        if c.allocator == "knapsack":
            return knapsack_values(self.m1[cls], self.m2[cls], c.arms)
        return variance_values(self.var[cls], c.arms, c.n_bar, v_ref=float(self.var[cls].mean()))

    # ---- decision --------------------------------------------------------------------------------------

    def allocate(self, bins) -> np.ndarray:
        """(N,) int64 rollouts per prompt for the batch's classes (before generation); sum == budget."""
        bins_N = self._bins(bins)
        if bins_N.size == 0:
            return np.zeros(0, np.int64)
        c = self.config
        counts_C = np.bincount(bins_N, minlength=self.num_classes)
        active_K = np.flatnonzero(counts_C)
        c_K, total = counts_C[active_K], self.budget(bins_N.size)
        x_C = np.zeros(self.num_classes)
        if c.allocator == "sqrt":
            x_C[active_K], lam = sqrt_allocation(c_K, self.var[active_K], c.n_bar, c.n_min, c.n_max)
            n_N, price = apportion(bins_N, x_C, total, c.n_min, c.n_max), 1.0 / lam**2
        elif c.allocator == "bandit":
            v_ref = float(c_K @ self.var[active_K] / c_K.sum())
            values_KA = variance_values(self.var[active_K], c.arms, c.n_bar, v_ref)
            price, x_C[active_K] = solve_price(values_KA, c_K, c.arms, c.eta, c.gamma, c.n_bar, mu0=self.mu)
            n_N = apportion(bins_N, x_C, total, c.n_min, c.n_max)
        else:
            n_N, price = self._knapsack(bins_N, active_K, c_K, total)
        self.mu = float(price)
        self._record(bins_N, n_N, total)
        return n_N

    def _knapsack(self, bins_N, active_K, c_K, total: int) -> tuple[np.ndarray, float]:
        c = self.config
        value_KA = knapsack_values(self.m1[active_K], self.m2[active_K], c.arms)
        gain_KA = c_K[:, None] * (value_KA - value_KA.max(1, keepdims=True))  # <= 0, class totals
        span = float(-gain_KA.min())
        score_KA = gain_KA * (_DP_RANGE / span) if span > 0 else gain_KA
        n_K, _ = joint_allocation(c_K, score_KA, c.n_min, total)
        n_C = np.zeros(self.num_classes, np.int64)
        n_C[active_K] = n_K
        value_CA = np.zeros((self.num_classes, c.arms.size))
        value_CA[active_K] = value_KA
        n_N = fill_to_total(n_C[bins_N], bins_N, value_CA, c.n_min, c.n_max, total)
        # shadow price: the value of the last rollout bought (smallest marginal value among raised classes)
        marg = [value_KA[k, n - c.n_min] - value_KA[k, n - c.n_min - 1] for k, n in enumerate(n_K) if n > c.n_min]
        return n_N, float(min(marg)) if marg else 0.0

    # ---- feedback --------------------------------------------------------------------------------------

    def observe(self, result: PromptResult) -> None:
        """Outcome statistics of every group in the result (generated and scored; trained or not)."""
        bins_N = self._bins(result.bins)
        if bins_N.size == 0:
            return
        c = self.config
        r1_N, r2_N = outcome_moments(result.n_rollouts, result.n_correct)
        cnt_C = np.bincount(bins_N, minlength=self.num_classes)
        present_C = cnt_C > 0
        denom_C = np.maximum(cnt_C, 1)
        step1_C = np.bincount(bins_N, r1_N, minlength=self.num_classes) / denom_C
        step2_C = np.bincount(bins_N, r2_N, minlength=self.num_classes) / denom_C
        beta = c.stats_ema_beta
        for name, step_C in (("m1", step1_C), ("m2", step2_C)):
            old_C = getattr(self, name)
            blended_C = np.where(self.seen, (1 - beta) * old_C + beta * step_C, step_C)
            setattr(self, name, np.where(present_C, blended_C, old_C))
        self.seen |= present_C

    # ---- logging and checkpoints -----------------------------------------------------------------------

    def _record(self, bins_N, n_N, total: int) -> None:
        counts_C = np.bincount(bins_N, minlength=self.num_classes)
        n_class_C = np.divide(
            np.bincount(bins_N, n_N, minlength=self.num_classes),
            counts_C,
            out=np.full(self.num_classes, np.nan),
            where=counts_C > 0,
        )
        both = np.isfinite(n_class_C) & np.isfinite(self._last["n_class"])  # prompt-weighted over classes in both
        gap_C = np.abs(n_class_C - self._last["n_class"])
        delta = float(counts_C[both] @ gap_C[both] / counts_C[both].sum()) if both.any() else 0.0
        self._last = {
            "bins": bins_N.copy(),
            "n": n_N.copy(),
            "total": int(total),
            "price": self.mu,
            "delta": delta,
            "n_class": n_class_C,
        }

    def metrics(self) -> dict[str, float]:
        """Last allocation (min/max/mean/std, entropy of the per-class budget shares, budget, per-class mean n and
        budget share, mean |change| of the per-class counts since the previous allocation), the price (mu;
        1/lambda^2 for sqrt; the last rollout's value for knapsack) and the per-class pass rate and variance."""
        pre = "controller/rollout_gdro/"
        out = {pre + "dual_mu": self.mu}
        for key, values in (("variance", self.var), ("pass_rate", self.m1)):
            out.update({f"{pre}{key}/{name}": float(v) for name, v in zip(self.class_names, values)})
        if not self._last["n"].size:
            return out
        bins_N, n_N = self._last["bins"], self._last["n"].astype(np.float64)
        spent_C = np.bincount(bins_N, n_N, minlength=self.num_classes)
        share_C = spent_C / spent_C.sum()
        p = share_C[share_C > 0]
        stats = {
            "alloc/min": n_N.min(),
            "alloc/max": n_N.max(),
            "alloc/mean": n_N.mean(),
            "alloc/std": n_N.std(),
            "alloc/entropy": -(p * np.log(p)).sum(),
            "alloc/delta": self._last["delta"],
            "budget/total": self._last["total"],
            "budget/spent": n_N.sum(),
            "budget/shortfall": self._last["total"] - n_N.sum(),
        }
        out.update({pre + k: float(v) for k, v in stats.items()})
        out.update({f"{pre}budget_share/{name}": float(v) for name, v in zip(self.class_names, share_C)})
        out.update(
            {f"{pre}n/{name}": float(v) for name, v in zip(self.class_names, self._last["n_class"]) if np.isfinite(v)}
        )  # classes absent from the batch have no count (plots leave them blank)
        return out

    def _identity(self) -> dict[str, Any]:
        return {"config": config_dict(self.config), "class_names": list(self.class_names)}

    def state_dict(self) -> dict[str, Any]:
        last = self._last
        return {
            "kind": "rollout_gdro",
            "identity": self._identity(),
            "m1": self.m1.tolist(),
            "m2": self.m2.tolist(),
            "seen": self.seen.tolist(),
            "mu": self.mu,
            "last": {
                "bins": last["bins"].tolist(),
                "n": last["n"].tolist(),
                "total": last["total"],
                "price": last["price"],
                "delta": last["delta"],
                "n_class": [None if np.isnan(v) else float(v) for v in last["n_class"]],
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_state(state, "rollout_gdro", self._identity())
        self.m1 = np.asarray(state["m1"], np.float64)
        self.m2 = np.asarray(state["m2"], np.float64)
        self.seen = np.asarray(state["seen"], bool)
        self.mu = float(state["mu"])
        last = state["last"]
        self._last = {
            "bins": np.asarray(last["bins"], np.int64),
            "n": np.asarray(last["n"], np.int64),
            "total": int(last["total"]),
            "price": float(last["price"]),
            "delta": float(last["delta"]),
            "n_class": np.array([np.nan if v is None else v for v in last["n_class"]], np.float64),
        }
