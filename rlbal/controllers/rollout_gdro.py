"""Rollout-GDRO: how many rollouts each difficulty class gets, under a fixed mean budget n_bar per prompt.

GDRO paper section 3.3 (arXiv 2601.19280). Two allocators (`allocator`):

'bandit' (the paper's): one exponential-weights bandit per class over the arms n_min..n_max. Before
generation, `allocate(bins)` takes the arm distributions p_b = (1-gamma) softmax(eta * score_b) + gamma/A
of the classes in the batch and an exact dynamic program picks the most probable joint allocation whose
total is exactly floor(N * n_bar) (or, when no per-class allocation reaches it, the largest total below:
spec 6.4). Ties are broken deterministically (spec 6.3): fewest squared rollouts sum_b c_b n_b^2 (closest
to uniform), then the smallest count for the highest class, then the next, ... After the step,
`observe(result)` feeds each chosen arm its class's mean loss signal m_b (higher -> more probability, as in
the released code), priced by the Lagrangian term: arms are scored by S_b(n) - mu (n - n_bar), with mu applied
to every arm when the distributions are formed (`price='decision'`, default) or folded into the played arm's
reward m_b - mu (n_b - n_bar) at that step (`price='feedback'`, the code). Then the dual price moves:

    mu <- mu + alpha_mu (target - n_bar),   target = 'preferred': sum_b share_b E_{p_b}[n]   (rlbal default)
                                                     'realised':  mean rollouts actually generated (paper Eq. 21)

The realised mean equals n_bar whenever the DP meets the budget, so Eq. 21 never moves mu (the released
code's mu stays 0); the preferred mean of the unconstrained bandits does, so mu prices compute. Arm scores
are an EMA (`arm_score='ema'`, paper: "arm score EMA decay 0.4") or a cumulative sum ('cumsum', code).

'sqrt' (Theorem 4.2, Neyman): n_b proportional to sqrt(v_b) within [n_min, n_max] at mean n_bar, with v_b
an online EMA of the class's within-prompt Bernoulli variance; the price reported is 1/lambda^2 of
n_b = lambda sqrt(v_b) (the shadow-price form n_b = sqrt(v_b / mu)). Real-valued targets are rounded per
prompt so the batch total is exact.

    >>> r = RolloutGDRO(RolloutGDROConfig(), num_classes=3)
    >>> r.allocate([0, 0, 1, 2]).tolist()                   # all arms equally likely: uniform wins the tie
    [4, 4, 4, 4]
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np

from rlbal.controllers.records import PromptResult, check_state, class_names, config_dict

Allocator = Literal["bandit", "sqrt"]
ArmScore = Literal["ema", "cumsum"]
DualTarget = Literal["preferred", "realised"]
Price = Literal["decision", "feedback"]
OnInfeasible = Literal["below", "fill"]
_CHOICES = {"allocator": get_args(Allocator), "arm_score": get_args(ArmScore),
            "dual_target": get_args(DualTarget), "on_infeasible": get_args(OnInfeasible), "price": get_args(Price)}
_COST_CAP = 50.0  # nats: arms less likely than e^-50 all count as equally impossible
_UNREACHABLE = 1 << 62  # DP key of a total no allocation reaches (above every reachable key)
_VAR_FLOOR = 1e-12  # keeps sqrt(v) > 0 so the budget can always be met


@dataclass(frozen=True)
class RolloutGDROConfig:
    """Rollout-count allocation. Defaults: paper values (arms 2..12, n_bar 4, eta 0.65, gamma 0.01, alpha 0.05)."""

    __pydantic_config__ = {"extra": "forbid"}  # unknown keys in a recipe are errors

    allocator: Allocator = "bandit"
    """'bandit': per-class exponential weights + exact-budget DP (paper). 'sqrt': Neyman rule n_b ~ sqrt(v_b)."""
    n_min: int = 2
    """Fewest rollouts per prompt (>= 2: no singleton groups)."""
    n_max: int = 12
    """Most rollouts per prompt (paper: 3 x the base 4)."""
    n_bar: float = 4.0
    """Budget: mean rollouts per prompt; a batch of N prompts gets floor(N * n_bar) rollouts in total."""
    eta: float = 0.65
    """Arm exponential-weights rate."""
    gamma: float = 0.01
    """Arm exploration: uniform mixing over the arms."""
    arm_score: ArmScore = "ema"
    """'ema' of the feedback each arm received (paper) or its cumulative sum 'cumsum' (released code)."""
    arm_ema_beta: float = 0.4
    """EMA rate of arm scores (weight of the newest feedback; paper: 'arm score EMA decay 0.4')."""
    alpha_mu: float = 0.05
    """Dual step size alpha_mu."""
    mu_init: float = 0.0
    """Initial dual price mu."""
    price: Price = "decision"
    """Where mu enters: 'decision' = arm scores track the signal and every arm is repriced by the current mu when
    probabilities are formed (one price for all arms: a unique equilibrium); 'feedback' = the Lagrangian reward
    m - mu (n - n_bar) of each step is folded into the played arm's score (released code)."""
    dual_target: DualTarget = "preferred"
    """What mu compares with n_bar: the bandits' 'preferred' mean (moves under the exact DP) or the 'realised' one."""
    on_infeasible: OnInfeasible = "below"
    """No per-class allocation hits the budget: 'below' keeps the DP's largest total under it; 'fill' tops
    individual prompts up by one rollout (most probable next arm first) to the exact total."""
    var_ema_beta: float = 0.12
    """EMA rate of the per-class variance estimate (sqrt allocator and metrics)."""
    var_prior: float = 0.25
    """Variance assumed for a class never observed (0.25 = the Bernoulli maximum: unknown classes get budget)."""

    def __post_init__(self) -> None:
        for name, allowed in _CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"RolloutGDROConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}")
        checks = (("n_min", self.n_min >= 2, ">= 2"), ("n_max", self.n_min <= self.n_max <= 64, "in [n_min, 64]"),
                  ("n_bar", self.n_min <= self.n_bar <= self.n_max, "in [n_min, n_max]"),
                  ("eta", self.eta > 0, "> 0"), ("gamma", 0 <= self.gamma <= 1, "in [0, 1]"),
                  ("arm_ema_beta", 0 < self.arm_ema_beta <= 1, "in (0, 1]"), ("alpha_mu", self.alpha_mu >= 0, ">= 0"),
                  ("var_ema_beta", 0 < self.var_ema_beta <= 1, "in (0, 1]"),
                  ("var_prior", 0 <= self.var_prior, ">= 0"))
        for name, ok, rule in checks:
            if not ok:
                raise ValueError(f"RolloutGDROConfig.{name} must be {rule}, got {getattr(self, name)!r}")

    @property
    def arms(self) -> np.ndarray:
        """(A,) the rollout counts n_min..n_max."""
        return np.arange(self.n_min, self.n_max + 1)


# ---- the exact-budget dynamic program ------------------------------------------------------------------


def arm_logp(score_KA: np.ndarray, eta: float, gamma: float) -> np.ndarray:
    """(K, A) log p of each arm: log((1-gamma) softmax(eta * score) + gamma / A), row-wise."""
    z_KA = eta * score_KA
    z_KA = z_KA - z_KA.max(1, keepdims=True)
    logsm_KA = z_KA - np.log(np.exp(z_KA).sum(1, keepdims=True))
    if gamma == 0:
        return logsm_KA
    return np.log((1.0 - gamma) * np.exp(logsm_KA) + gamma / score_KA.shape[1])


def dp_keys(counts_K: np.ndarray, logp_KA: np.ndarray, n_min: int) -> np.ndarray:
    """(K, A) int64 DP key per (class, arm): quantised -log p in the high bits, c_k n^2 in the low bits.

    Integer keys make sums exact, so equal-probability allocations tie exactly and the tie-break (fewest
    sum c n^2, i.e. closest to uniform at a fixed total) is the low part of the same number. Sums of K keys
    stay below 2^56, leaving 6 bits for the arm index the DP packs underneath.
    """
    K, A = logp_KA.shape
    n_max = n_min + A - 1
    mult = 1 << int(counts_K.sum() * n_max * n_max).bit_length()  # > any sum of c n^2
    room = ((1 << 56) // mult - 1) / (_COST_CAP * K)  # the quantised cost sum must stay below this
    if room < 2.0**12:
        raise ValueError(f"joint_allocation: {int(counts_K.sum())} prompts in {K} classes leave too few key bits")
    scale = 2.0 ** min(32, int(np.floor(np.log2(room))))
    cost_KA = np.rint(np.clip(-logp_KA, 0.0, _COST_CAP) * scale).astype(np.int64)  # log p <= 0 for probabilities
    return cost_KA * mult + counts_K[:, None] * (n_min + np.arange(A))[None, :] ** 2


def joint_allocation(counts_K, logp_KA, n_min: int, total: int) -> tuple[np.ndarray, int]:
    """Most probable per-class counts with sum_k c_k n_k == total, else the largest total below it.

    counts_K: (K,) prompts per class (all > 0); logp_KA: (K, A) log-probabilities of arms n_min..n_min+A-1.
    Returns ((K,) int64 counts, the total reached). DP over the extra rollouts t = sum c_k (n_k - n_min) in
    0..R (R = total - n_min sum c): one (A, R+1) vector step per class, no joint enumeration. The arm index
    rides in the low 6 bits of each candidate, so one `min` gives the best key and (on exact ties) the
    smallest arm. Unreachable totals are clamped to a sentinel each step so keys never overflow.
    """
    counts_K = np.asarray(counts_K, np.int64)
    logp_KA = np.asarray(logp_KA, np.float64)
    K, A = logp_KA.shape
    R = int(total) - n_min * int(counts_K.sum())
    if R < 0 or counts_K.min() < 1 or A > 64:
        raise ValueError(f"joint_allocation: total {total} is below n_min * prompts, a class is empty or A > 64")
    # Row j of the view below is best shifted right by (A-1-j) c, i.e. arm n_min + A-1-j: keys reversed to match.
    step_KA1 = ((dp_keys(counts_K, logp_KA, n_min) << 6) + np.arange(A))[:, ::-1, None]
    pad = (A - 1) * int(counts_K.max())
    buf = np.full(pad + R + 1, _UNREACHABLE, np.int64)  # [pad: never reachable | best over totals 0..R]
    buf[pad] = 0
    cand_AS = np.empty((A, R + 1), np.int64)
    choice_KS = np.empty((K, R + 1), np.int8)
    for k in range(K):  # classes: ~10 vector steps
        c = int(counts_K[k])
        shifted_AS = np.ndarray((A, R + 1), np.int64, buf, (pad - (A - 1) * c) * 8, (c * 8, 8))
        best_S = np.add(shifted_AS, step_KA1[k], out=cand_AS).min(0)
        choice_KS[k] = best_S & 63
        np.minimum(best_S & ~63, _UNREACHABLE, out=buf[pad:])
    reach_S = buf[pad:] < _UNREACHABLE
    t = R if reach_S[R] else int(np.flatnonzero(reach_S)[-1])
    reached, n_K = t, np.empty(K, np.int64)
    for k in range(K - 1, -1, -1):
        a = int(choice_KS[k, t])
        n_K[k], t = n_min + a, t - a * int(counts_K[k])
    return n_K, n_min * int(counts_K.sum()) + reached


def fill_to_total(n_N, bins_N, logp_CA, n_min: int, n_max: int, total: int) -> np.ndarray:
    """(N,) counts topped up by one rollout at a time, most probable next arm first (ties: batch order)."""
    n_N = np.array(n_N, np.int64)
    deficit = int(total - n_N.sum())
    while deficit > 0:
        a_N = n_N - n_min
        gain_N = logp_CA[bins_N, np.minimum(a_N + 1, n_max - n_min)] - logp_CA[bins_N, a_N]
        gain_N = np.where(n_N < n_max, gain_N, -np.inf)
        pick = np.argsort(-gain_N, kind="stable")[:deficit]
        pick = pick[np.isfinite(gain_N[pick])]
        if pick.size == 0:
            raise ValueError(f"fill_to_total: every prompt is at n_max={n_max}, total {total} unreachable")
        n_N[pick] += 1
        deficit -= pick.size
    return n_N


# ---- the square-root (Neyman) allocator ----------------------------------------------------------------


def sqrt_allocation(counts_K, var_K, n_bar: float, n_min: int, n_max: int) -> tuple[np.ndarray, float]:
    """(K,) real counts n_k = clip(lam sqrt(v_k), n_min, n_max) with sum c_k n_k = n_bar sum c_k, and lam.

    Without active bounds this is the closed form n_k = n_bar sqrt(v_k) / sum_j q_j sqrt(v_j), q = c / N.
    The budget is piecewise linear in lam with kinks at n_min/s_k and n_max/s_k: exact on the right piece.
    """
    c_K = np.asarray(counts_K, np.float64)
    s_K = np.sqrt(np.maximum(np.asarray(var_K, np.float64), _VAR_FLOOR))
    target = n_bar * c_K.sum()
    lam_J = np.sort(np.concatenate([n_min / s_K, n_max / s_K]))
    f_J = (c_K * np.clip(lam_J[:, None] * s_K, n_min, n_max)).sum(1)  # (2K,) budget at each kink
    j = int(np.searchsorted(f_J, target, side="left"))
    if f_J[j] <= target or j == 0:
        lam = float(lam_J[j])
    else:  # linear between kinks j-1 and j (f strictly increasing there since f[j-1] < target < f[j])
        lam = float(lam_J[j - 1] + (target - f_J[j - 1]) * (lam_J[j] - lam_J[j - 1]) / (f_J[j] - f_J[j - 1]))
    return np.clip(lam * s_K, n_min, n_max), lam


def apportion(bins_N, x_C, total: int, n_min: int, n_max: int) -> np.ndarray:
    """(N,) integer counts with sum == total and |n_i - x_bin(i)| < 1: largest remainder over classes,
    then the first prompts (batch order) of a class take its leftover units."""
    bins_N = np.asarray(bins_N, np.int64)
    c_C = np.bincount(bins_N, minlength=x_C.size)
    tau_C = c_C * x_C
    base_C = np.clip(np.floor(tau_C + 1e-9), c_C * n_min, c_C * n_max).astype(np.int64)
    extra = int(total - base_C.sum())
    resid_C = tau_C - base_C
    if extra > 0:
        order = np.argsort(np.where(base_C < c_C * n_max, -resid_C, np.inf), kind="stable")[:extra]
        base_C[order] += 1
    elif extra < 0:
        order = np.argsort(np.where(base_C > c_C * n_min, resid_C, np.inf), kind="stable")[:-extra]
        base_C[order] -= 1
    per_C, left_C = np.divmod(base_C, np.maximum(c_C, 1))
    return per_C[bins_N] + (_rank_in_class(bins_N) < left_C[bins_N])


def _rank_in_class(bins_N: np.ndarray) -> np.ndarray:
    """(N,) position of each prompt among the prompts of its class, in batch order."""
    order = np.argsort(bins_N, kind="stable")
    sorted_bins = bins_N[order]
    start = np.searchsorted(sorted_bins, sorted_bins, side="left")
    rank = np.empty(bins_N.size, np.int64)
    rank[order] = np.arange(bins_N.size) - start
    return rank


# ---- the controller ------------------------------------------------------------------------------------


class RolloutGDRO:
    """Per-class arm bandits (or variance estimates) -> rollout count per prompt. `num_classes` from the classifier."""

    def __init__(self, config: RolloutGDROConfig = RolloutGDROConfig(), num_classes: int = 10,
                 names: tuple[str, ...] | None = None) -> None:
        if num_classes < 1:
            raise ValueError(f"RolloutGDRO.num_classes must be >= 1, got {num_classes}")
        self.config = config
        self.num_classes = num_classes
        self.class_names = names or class_names(num_classes)
        if len(self.class_names) != num_classes:
            raise ValueError(f"RolloutGDRO: {len(self.class_names)} class names for {num_classes} classes")
        A = config.n_max - config.n_min + 1
        self.scores = np.zeros((num_classes, A))  # arm score per (class, arm)
        self.arm_seen = np.zeros((num_classes, A), bool)
        self.mu = float(config.mu_init)
        self.var = np.full(num_classes, float(config.var_prior))  # within-prompt success variance per class
        self.var_seen = np.zeros(num_classes, bool)
        self._last: dict[str, Any] = {"bins": np.zeros(0, np.int64), "n": np.zeros(0, np.int64), "total": 0,
                                      "price": float(config.mu_init)}

    def _bins(self, bins) -> np.ndarray:
        bins_N = np.asarray(bins, np.int64).reshape(-1)
        if bins_N.size and (bins_N.min() < 0 or bins_N.max() >= self.num_classes):
            raise ValueError(f"RolloutGDRO: bins must lie in [0, {self.num_classes}), got {bins_N.min()}..{bins_N.max()}")
        return bins_N

    def priced_scores(self) -> np.ndarray:
        """(C, A) the scores the arm distributions are formed from (minus mu (n - n_bar) with price='decision')."""
        c = self.config
        return self.scores - self.mu * (c.arms - c.n_bar)[None, :] if c.price == "decision" else self.scores

    def arm_probs(self) -> np.ndarray:
        """(C, A) current arm distribution of every class."""
        return np.exp(arm_logp(self.priced_scores(), self.config.eta, self.config.gamma))

    def budget(self, n_prompts: int) -> int:
        """Total rollouts for a batch of n_prompts: floor(n_prompts * n_bar)."""
        return int(np.floor(n_prompts * self.config.n_bar + 1e-9))

    # ---- decision --------------------------------------------------------------------------------------

    def allocate(self, bins) -> np.ndarray:
        """(N,) int64 rollouts per prompt for the batch's classes (before generation); sum <= budget."""
        bins_N = self._bins(bins)
        if bins_N.size == 0:
            return np.zeros(0, np.int64)
        c = self.config
        counts_C = np.bincount(bins_N, minlength=self.num_classes)
        active_K = np.flatnonzero(counts_C)
        total = self.budget(bins_N.size)
        if c.allocator == "sqrt":
            x_K, lam = sqrt_allocation(counts_C[active_K], self.var[active_K], c.n_bar, c.n_min, c.n_max)
            x_C = np.zeros(self.num_classes)
            x_C[active_K] = x_K
            n_N, price = apportion(bins_N, x_C, total, c.n_min, c.n_max), 1.0 / lam**2
        else:
            logp_CA = arm_logp(self.priced_scores(), c.eta, c.gamma)
            n_K, _ = joint_allocation(counts_C[active_K], logp_CA[active_K], c.n_min, total)
            n_C = np.zeros(self.num_classes, np.int64)
            n_C[active_K] = n_K
            n_N, price = n_C[bins_N], self.mu
            if n_N.sum() < total and c.on_infeasible == "fill":
                n_N = fill_to_total(n_N, bins_N, logp_CA, c.n_min, c.n_max, total)
        self._record(bins_N, n_N, counts_C, total, price)
        return n_N

    def preferred_mean(self, counts_C: np.ndarray) -> float:
        """sum_b share_b E_{p_b}[n]: the mean the unconstrained bandits would spend on these class counts."""
        expected_C = self.arm_probs() @ self.config.arms
        return float(counts_C @ expected_C / max(counts_C.sum(), 1))

    # ---- feedback --------------------------------------------------------------------------------------

    def observe(self, result: PromptResult) -> None:
        """Variance estimates; with the bandit also arm rewards m_b - mu (n_b - n_bar) and the dual step."""
        bins_N = self._bins(result.bins)
        if bins_N.size == 0:
            return
        c = self.config
        n_N = result.n_rollouts
        if n_N.min() < c.n_min or n_N.max() > c.n_max:
            raise ValueError(f"RolloutGDRO.observe: n_rollouts must lie in [{c.n_min}, {c.n_max}], "
                             f"got {n_N.min()}..{n_N.max()}")
        self._observe_variance(bins_N, n_N, result.n_correct)
        if c.allocator != "bandit":
            return
        counts_C = np.bincount(bins_N, minlength=self.num_classes)
        target = self.preferred_mean(counts_C) if c.dual_target == "preferred" else float(n_N.mean())
        self._observe_arms(bins_N, n_N, result.loss_signal)
        self.mu += c.alpha_mu * (target - c.n_bar)

    def _observe_arms(self, bins_N: np.ndarray, n_N: np.ndarray, signal_N: np.ndarray) -> None:
        c = self.config
        A = self.scores.shape[1]
        pair_N = bins_N * A + (n_N - c.n_min)  # (class, arm) actually used by each prompt
        cnt_P = np.bincount(pair_N, minlength=self.scores.size)
        present_P = cnt_P > 0
        mean_P = np.divide(np.bincount(pair_N, signal_N, minlength=self.scores.size), cnt_P,
                           out=np.zeros(self.scores.size), where=present_P)
        reward_CA = mean_P.reshape(self.scores.shape)
        if c.price == "feedback":  # the code's Lagrangian reward, priced at this step's mu
            reward_CA = reward_CA - self.mu * (c.arms - c.n_bar)[None, :]
        present_CA = present_P.reshape(self.scores.shape)
        if c.arm_score == "ema":  # first reward initialises, later ones blend; unplayed arms keep their score
            blended = np.where(self.arm_seen, (1 - c.arm_ema_beta) * self.scores + c.arm_ema_beta * reward_CA,
                               reward_CA)
            self.scores = np.where(present_CA, blended, self.scores)
        else:
            self.scores = self.scores + np.where(present_CA, reward_CA, 0.0)
        self.arm_seen |= present_CA

    def _observe_variance(self, bins_N: np.ndarray, n_N: np.ndarray, correct_N: np.ndarray) -> None:
        # Unbiased within-prompt Bernoulli variance k(n-k) / (n(n-1)): 0 for all-right or all-wrong groups.
        v_N = correct_N * (n_N - correct_N) / (n_N * np.maximum(n_N - 1, 1))
        cnt_C = np.bincount(bins_N, minlength=self.num_classes)
        present_C = cnt_C > 0
        step_C = np.divide(np.bincount(bins_N, v_N, minlength=self.num_classes), cnt_C,
                           out=np.zeros(self.num_classes), where=present_C)
        beta = self.config.var_ema_beta
        blended_C = np.where(self.var_seen, (1 - beta) * self.var + beta * step_C, step_C)
        self.var = np.where(present_C, blended_C, self.var)
        self.var_seen |= present_C

    # ---- logging and checkpoints -----------------------------------------------------------------------

    def _record(self, bins_N, n_N, counts_C, total: int, price: float) -> None:
        # Raw facts only; metrics() derives the statistics (keeps allocate cheap).
        self._last = {"bins": bins_N.copy(), "n": n_N.copy(), "total": int(total), "price": float(price)}

    def metrics(self) -> dict[str, float]:
        """Last allocation (min/max/mean/std, entropy of the per-class budget shares, budget, per-class mean n
        and budget share, the bandits' preferred mean), the dual price (mu; 1/lambda^2 for sqrt) and the
        per-class variance estimates."""
        pre = "controller/rollout_gdro/"
        out = {pre + "dual_mu": self.mu if self.config.allocator == "bandit" else self._last["price"]}
        out.update({f"{pre}variance/{name}": float(v) for name, v in zip(self.class_names, self.var)})
        if not self._last["n"].size:
            return out
        bins_N, n_N = self._last["bins"], self._last["n"].astype(np.float64)
        counts_C = np.bincount(bins_N, minlength=self.num_classes)
        spent_C = np.bincount(bins_N, n_N, minlength=self.num_classes)
        share_C = spent_C / spent_C.sum()
        n_C = np.divide(spent_C, counts_C, out=np.zeros(self.num_classes), where=counts_C > 0)
        p = share_C[share_C > 0]
        stats = {"alloc/min": n_N.min(), "alloc/max": n_N.max(), "alloc/mean": n_N.mean(), "alloc/std": n_N.std(),
                 "alloc/entropy": -(p * np.log(p)).sum(), "budget/total": self._last["total"],
                 "budget/spent": n_N.sum(), "budget/shortfall": self._last["total"] - n_N.sum(),
                 "preferred_mean": self.preferred_mean(counts_C)}
        out.update({pre + k: float(v) for k, v in stats.items()})
        for key, values in (("n", n_C), ("budget_share", share_C)):
            out.update({f"{pre}{key}/{name}": float(v) for name, v in zip(self.class_names, values)})
        return out

    def _identity(self) -> dict[str, Any]:
        return {"config": config_dict(self.config), "class_names": list(self.class_names)}

    def state_dict(self) -> dict[str, Any]:
        return {"kind": "rollout_gdro", "identity": self._identity(), "scores": self.scores.tolist(),
                "arm_seen": self.arm_seen.tolist(), "mu": self.mu, "var": self.var.tolist(),
                "var_seen": self.var_seen.tolist(),
                "last": {**self._last, "bins": self._last["bins"].tolist(), "n": self._last["n"].tolist()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_state(state, "rollout_gdro", self._identity())
        self.scores = np.asarray(state["scores"], np.float64)
        self.arm_seen = np.asarray(state["arm_seen"], bool)
        self.mu = float(state["mu"])
        self.var = np.asarray(state["var"], np.float64)
        self.var_seen = np.asarray(state["var_seen"], bool)
        last = state["last"]
        self._last = {**last, "bins": np.asarray(last["bins"], np.int64), "n": np.asarray(last["n"], np.int64)}
