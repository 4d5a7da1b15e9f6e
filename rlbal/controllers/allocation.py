"""Pure allocation pieces of Rollout-GDRO (numpy only): what a class's arms are worth, and integer counts
that spend a batch's budget exactly.

Arm values come from each class's outcome statistics: m1 = E[k/n] and m2 = E[k(k-1)/(n(n-1))], which are
unbiased for E[p] and E[p^2] of the class's per-response success probability p at any group size n, so
prompts observed with 2 or with 12 rollouts feed the same estimates. From them:

    variance   v = m1 - m2 = E[p(1-p)]      the within-prompt reward variance (Theorem 4.2's v_b)
    beta fit   p ~ Beta(a, b) with mean m1 and spread m2 - m1^2 (a point mass when the spread is 0)
    knapsack   E[(1 - p^n - (1-p)^n) p (1-p)^2]   Knapsack RL's value: P(non-degenerate group) x info gain

Integer counts: `apportion` rounds real per-class targets to per-prompt counts with the exact total (every
prompt within 1 of its class target); `joint_allocation` is the exact dynamic program over per-class
counts (most valuable allocation at an exact total, ties to the allocation closest to uniform).

    >>> variance_values(np.array([0.25, 0.0]), np.arange(2, 7), n_bar=4.0, v_ref=0.25)[:, [0, 2]].round(3).tolist()
    [[-8.0, -4.0], [-0.0, -0.0]]
"""

from __future__ import annotations

import math

import numpy as np

_COST_CAP = 50.0  # nats: arms less likely than e^-50 all count as equally impossible
_UNREACHABLE = 1 << 62  # DP key of a total no allocation reaches (above every reachable key)
_VAR_FLOOR = 1e-12  # keeps sqrt(v) > 0 so the budget can always be met
_SPREAD_FLOOR = 1e-9  # a between-prompt variance below this is a point mass


# ---- arm values from outcome statistics ---------------------------------------------------------------


def outcome_moments(n_N, k_N) -> tuple[np.ndarray, np.ndarray]:
    """(N,) k/n and k(k-1)/(n(n-1)): unbiased per group for p and p^2 (the second is 0 when n = 1)."""
    n_N = np.asarray(n_N, np.float64)
    k_N = np.asarray(k_N, np.float64)
    return k_N / n_N, k_N * (k_N - 1) / (n_N * np.maximum(n_N - 1, 1))


def beta_moment(m1_C, m2_C, a, b) -> np.ndarray:
    """(C,) E[p^a (1-p)^b] for integer a, b >= 0 under the Beta fit to mean m1 and second moment m2.

    >>> beta_moment(np.array([0.5, 0.25]), np.array([0.25, 0.25]), 1, 1).round(4).tolist()   # point mass; Beta(1/3, 1)
    [0.25, 0.0]
    """
    m1_C = np.clip(np.asarray(m1_C, np.float64), 0.0, 1.0)
    spread_C = np.clip(np.asarray(m2_C, np.float64) - m1_C**2, 0.0, m1_C * (1 - m1_C) * (1 - 1e-6))
    point_C = m1_C**a * (1 - m1_C) ** b
    out = point_C.copy()
    for c in np.flatnonzero((spread_C > _SPREAD_FLOOR) & (m1_C > 0) & (m1_C < 1)):
        kappa = m1_C[c] * (1 - m1_C[c]) / spread_C[c] - 1.0  # a + b of the Beta fit (> 0)
        al, be = m1_C[c] * kappa, (1 - m1_C[c]) * kappa
        out[c] = math.exp(
            math.lgamma(al + a)
            + math.lgamma(be + b)
            - math.lgamma(al + be + a + b)
            - math.lgamma(al)
            - math.lgamma(be)
            + math.lgamma(al + be)
        )
    return out


def variance_values(var_C, arms_A, n_bar: float, v_ref: float) -> np.ndarray:
    """(C, A) arm value -(v_b / v_ref) n_bar^2 / n: minus the class's squared standard error, in units where a
    class of variance v_ref at n_bar rollouts is worth -n_bar. Its Lagrangian best response is n ~ sqrt(v)."""
    scale_C = np.asarray(var_C, np.float64) / max(float(v_ref), _VAR_FLOOR)
    return -scale_C[:, None] * (n_bar**2 / np.asarray(arms_A, np.float64))[None, :]


def knapsack_values(m1_C, m2_C, arms_A) -> np.ndarray:
    """(C, A) Knapsack RL's value E[(1 - p^n - (1-p)^n) p (1-p)^2] of n rollouts per prompt of each class."""
    gain_C = beta_moment(m1_C, m2_C, 1, 2)
    cols = [gain_C - beta_moment(m1_C, m2_C, n + 1, 2) - beta_moment(m1_C, m2_C, 1, n + 2) for n in arms_A]
    return np.stack(cols, axis=1)


# ---- exponential weights over arms: soft best responses at a price --------------------------------------


def arm_logp(score_KA: np.ndarray, eta: float, gamma: float) -> np.ndarray:
    """(K, A) log p of each arm: log((1-gamma) softmax(eta * score) + gamma / A), row-wise."""
    z_KA = eta * score_KA
    z_KA = z_KA - z_KA.max(1, keepdims=True)
    logsm_KA = z_KA - np.log(np.exp(z_KA).sum(1, keepdims=True))
    if gamma == 0:
        return logsm_KA
    return np.log((1.0 - gamma) * np.exp(logsm_KA) + gamma / score_KA.shape[1])


def soft_targets(values_KA, arms_A, eta: float, gamma: float, mu: float) -> tuple[np.ndarray, np.ndarray]:
    """(K,) expected arm E_p[n] and (K,) its variance under p = (1-gamma) softmax(eta (value - mu n)) + gamma/A."""
    arms = np.asarray(arms_A, np.float64)
    p_KA = np.exp(arm_logp(np.asarray(values_KA) - mu * arms[None, :], eta, gamma))
    mean_K = p_KA @ arms
    return mean_K, p_KA @ arms**2 - mean_K**2


def solve_price(
    values_KA, counts_K, arms_A, eta: float, gamma: float, n_bar: float, mu0: float = 0.0
) -> tuple[float, np.ndarray]:
    """The price mu at which the classes' expected arms spend the budget: sum_k c_k E[n_k] = n_bar sum_k c_k.

    The spend is strictly decreasing in mu (its derivative is -eta (1-gamma) sum_k c_k Var[n_k]), so a
    safeguarded Newton iteration from mu0 (last step's price) converges in a few steps. When n_bar is outside
    what mixing allows (e.g. n_bar = n_max with gamma > 0), the bracket end is returned.
    Returns (mu, (K,) targets E[n_k] at mu).
    """
    c_K = np.asarray(counts_K, np.float64)
    target = n_bar * c_K.sum()
    lo, hi = -np.inf, np.inf
    mu, step = float(mu0), 1.0
    for _ in range(100):
        x_K, var_K = soft_targets(values_KA, arms_A, eta, gamma, mu)
        gap = float(c_K @ x_K) - target
        if abs(gap) <= 1e-9 * max(target, 1.0):
            return mu, x_K
        lo, hi = (mu, hi) if gap > 0 else (lo, mu)  # spend too high -> the price must rise
        slope = eta * (1.0 - gamma) * float(c_K @ var_K)
        nxt = mu + gap / slope if slope > 1e-12 else np.nan
        if not (np.isfinite(nxt) and lo < nxt < hi):  # bracket first (doubling), then bisect
            if np.isinf(lo) or np.isinf(hi):
                nxt = mu + (step if gap > 0 else -step)
                step *= 2.0
                if step > 1e12:
                    return mu, x_K
            else:
                nxt = 0.5 * (lo + hi)
        mu = float(nxt)
    return mu, soft_targets(values_KA, arms_A, eta, gamma, mu)[0]


# ---- the square-root (Neyman) rule ---------------------------------------------------------------------


def sqrt_allocation(counts_K, var_K, n_bar: float, n_min: int, n_max: int) -> tuple[np.ndarray, float]:
    """(K,) real counts n_k = clip(lam sqrt(v_k), n_min, n_max) with sum c_k n_k = n_bar sum c_k, and lam.

    Without active bounds this is the closed form n_k = n_bar sqrt(v_k) / sum_j q_j sqrt(v_j), q = c / N.
    The budget is piecewise linear in lam with kinks at n_min/s_k and n_max/s_k: exact on the right piece.
    At n_bar == n_max (or n_min) every class sits at that bound.
    """
    c_K = np.asarray(counts_K, np.float64)
    s_K = np.sqrt(np.maximum(np.asarray(var_K, np.float64), _VAR_FLOOR))
    if n_bar >= n_max or n_bar <= n_min:
        bound = float(n_max if n_bar >= n_max else n_min)
        return np.full(s_K.shape, bound), float((n_max if n_bar >= n_max else n_min) / s_K.min())
    target = n_bar * c_K.sum()
    lam_J = np.sort(np.concatenate([n_min / s_K, n_max / s_K]))
    f_J = (c_K * np.clip(lam_J[:, None] * s_K, n_min, n_max)).sum(1)  # (2K,) budget at each kink
    j = min(int(np.searchsorted(f_J, target, side="left")), lam_J.size - 1)
    if f_J[j] <= target or j == 0:
        lam = float(lam_J[j])
    else:  # linear between kinks j-1 and j (f strictly increasing there since f[j-1] < target < f[j])
        lam = float(lam_J[j - 1] + (target - f_J[j - 1]) * (lam_J[j] - lam_J[j - 1]) / (f_J[j] - f_J[j - 1]))
    return np.clip(lam * s_K, n_min, n_max), lam


def apportion(bins_N, x_C, total: int, n_min: int, n_max: int) -> np.ndarray:
    """(N,) integer counts with sum == total: largest remainder over classes (|n_i - x_bin(i)| < 1 whenever
    sum_b c_b x_b == total; a larger gap is spread one unit per class and round), then the first prompts
    (batch order) of a class take its leftover units."""
    bins_N = np.asarray(bins_N, np.int64)
    c_C = np.bincount(bins_N, minlength=x_C.size)
    tau_C = c_C * x_C
    base_C = np.clip(np.floor(tau_C + 1e-9), c_C * n_min, c_C * n_max).astype(np.int64)
    extra = int(total - base_C.sum())
    while extra != 0:  # one unit per class and round, largest remainder first (usually a single round)
        resid_C = tau_C - base_C
        room_C = base_C < c_C * n_max if extra > 0 else base_C > c_C * n_min
        if not room_C.any():
            raise ValueError(f"apportion: total {total} is outside [n_min, n_max] x {bins_N.size} prompts")
        key_C = np.where(room_C, -resid_C if extra > 0 else resid_C, np.inf)
        order = np.argsort(key_C, kind="stable")[: min(abs(extra), int(room_C.sum()))]
        base_C[order] += 1 if extra > 0 else -1
        extra = int(total - base_C.sum())
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


# ---- the exact-budget dynamic program ------------------------------------------------------------------


def dp_keys(counts_K: np.ndarray, logp_KA: np.ndarray, n_min: int) -> np.ndarray:
    """(K, A) int64 DP key per (class, arm): quantised -log p in the high bits, c_k n^2 in the low bits.

    Integer keys make sums exact, so equal-value allocations tie exactly and the tie-break (fewest sum c n^2,
    i.e. closest to uniform at a fixed total) is the low part of the same number. Costs are rounded to a
    grid (2^12 to 2^20 steps per nat) *relative to each row's best arm*, so two arms of equal log p always
    get equal keys. Sums of K keys stay below 2^56, leaving 6 bits for the arm index the DP packs underneath.
    """
    K, A = logp_KA.shape
    n_max = n_min + A - 1
    mult = 1 << int(counts_K.sum() * n_max * n_max).bit_length()  # > any sum of c n^2
    room = ((1 << 56) // mult - 1) / (_COST_CAP * K)  # the quantised cost sum must stay below this
    if room < 2.0**12:
        raise ValueError(f"joint_allocation: {int(counts_K.sum())} prompts in {K} classes leave too few key bits")
    scale = 2.0 ** min(20, int(np.floor(np.log2(room))))  # 1e-6 nat: float noise never splits a tie
    rel_KA = logp_KA.max(1, keepdims=True) - logp_KA  # >= 0; exact 0 for every arm tied with the best
    cost_KA = np.rint(np.clip(rel_KA, 0.0, _COST_CAP) * scale).astype(np.int64)
    return cost_KA * mult + counts_K[:, None] * (n_min + np.arange(A))[None, :] ** 2


def joint_allocation(counts_K, logp_KA, n_min: int, total: int) -> tuple[np.ndarray, int]:
    """Best per-class counts with sum_k c_k n_k == total, else the largest total below it.

    counts_K: (K,) prompts per class (all > 0); logp_KA: (K, A) scores of arms n_min..n_min+A-1 (log-probabilities,
    or any per-class value whose sum over classes is maximised; only differences within a row matter). Returns
    ((K,) int64 counts, the total reached). DP over the extra rollouts t = sum c_k (n_k - n_min) in 0..R
    (R = total - n_min sum c): one (A, R+1) vector step per class, no joint enumeration. The arm index rides in
    the low 6 bits of each candidate, so one `min` gives the best key and (on exact ties) the smallest arm.
    Unreachable totals are clamped to a sentinel each step so keys never overflow.
    """
    counts_K = np.asarray(counts_K, np.int64)
    logp_KA = np.asarray(logp_KA, np.float64)
    K, A = logp_KA.shape
    R = int(total) - n_min * int(counts_K.sum())
    if R < 0 or counts_K.min() < 1 or A > 64:
        raise ValueError(f"joint_allocation: total {total} is below n_min * prompts, a class is empty or A > 64")
    # A candidate is one int64, most significant part first, so one `min` compares the value, then the tie-break
    # (closest to uniform), then the arm:
    #     [ quantised -log p, as cost * mult | sum c n^2 (< mult) | arm index, 6 bits ]
    # The first two parts, summed over the classes so far, stay below 2^56 (dp_keys); `& ~63` strips the arm.
    # buf holds the best key so far per total t of extra rollouts, with `pad` sentinels in front:
    #     buf = [ _UNREACHABLE x pad | best(t = 0) best(t = 1) ... best(t = R) ]
    # Row j of the view below is best shifted right by (A-1-j) c, i.e. arm n_min + A-1-j: keys reversed to match.
    step_KA1 = ((dp_keys(counts_K, logp_KA, n_min) << 6) + np.arange(A))[:, ::-1, None]
    pad = (A - 1) * int(counts_K.max())
    buf = np.full(pad + R + 1, _UNREACHABLE, np.int64)  # [pad: never reachable | best over totals 0..R]
    buf[pad] = 0
    cand_AS = np.empty((A, R + 1), np.int64)
    choice_KS = np.empty((K, R + 1), np.int8)
    for k in range(K):  # classes: ~10 vector steps
        c = int(counts_K[k])
        # A strided view of buf: row j starts (A-1-j) c entries before the totals, so row j at column t reads
        # the best key of total t - (A-1-j) c, i.e. the state before this class took arm n_min + A-1-j.
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


def fill_to_total(n_N, bins_N, value_CA, n_min: int, n_max: int, total: int) -> np.ndarray:
    """(N,) counts topped up by one rollout at a time, most valuable next arm first (ties: batch order)."""
    n_N = np.array(n_N, np.int64)
    deficit = int(total - n_N.sum())
    while deficit > 0:
        a_N = n_N - n_min
        gain_N = value_CA[bins_N, np.minimum(a_N + 1, n_max - n_min)] - value_CA[bins_N, a_N]
        gain_N = np.where(n_N < n_max, gain_N, -np.inf)
        pick = np.argsort(-gain_N, kind="stable")[:deficit]
        pick = pick[np.isfinite(gain_N[pick])]
        if pick.size == 0:
            raise ValueError(f"fill_to_total: every prompt is at n_max={n_max}, total {total} unreachable")
        n_N[pick] += 1
        deficit -= pick.size
    return n_N
