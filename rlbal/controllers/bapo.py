"""BAPO adaptive clip search: choose the PPO ratio bounds (c_low, c_high) for one policy update.

BAPO (Xi et al. 2025, arXiv 2510.18927, Algorithm 1) re-picks *absolute* ratio bounds before every update so
that tokens with a positive advantage carry at least a share rho0 of the loss: starting from (a-, a+), it
widens the upper bound in steps delta1 up to b+, then raises the lower bound in steps delta2 up to b-, and
stops as soon as the positive share reaches rho0. This module is the pure numpy part (no torch); the loss
with the chosen bounds lives in `rlbal.algo.losses`.

    >>> import numpy as np
    >>> ratio_T = np.array([1.52, 1.0]); adv_T = np.array([1.0, -1.0]); mask_T = np.ones(2)
    >>> b = bapo_search(ratio_T, adv_T, mask_T, BapoConfig())
    >>> round(b.c_low, 2), round(b.c_high, 2), b.n_steps, b.reached, round(b.share, 3)
    (0.6, 1.55, 7, True, 0.603)

(The positive token's ratio 1.52 is clipped until c_high > 1.52, i.e. 7 upper steps 1.2 -> 1.55; then
pos = 1.52, neg = 1.0 and the share is 1.52 / 2.52 = 0.603 >= 0.4.)

With torch: `bapo_search(ratio.detach().cpu().numpy(), adv.detach().cpu().numpy(), mask.cpu().numpy(), cfg)`.
Under data parallelism every rank must use the same bounds: build `contribution_tables(...)` per rank,
all-reduce (sum) `pos_H` and `neg_L`, then call `pick_bounds(tables, cfg)` — the tables are plain sums.

What "share" measures (algorithms.md section 6.1). Read literally (and as the released code computes it),
Eq. 8 weighs each token by its loss *value*: a negative token contributes |A|*max(r, c_low), so raising
c_low makes the negative side larger and the share smaller, the opposite of the paper's argument. The
argument is about gradients: a clipped token carries none. rlbal's default `measure="gradient"` therefore
counts only gradient-carrying tokens — positive: A > 0 and r < c_high; negative: A < 0 and r > c_low; each
contributing |r*A| — where both moves raise the share (the search is monotone). `measure="value"` keeps the
literal reading: positive A*min(r, c_high), negative |A|*max(r, c_low).

Candidates are start + k*step, never above the max (Algorithm 1's guard); the released code clamps its last
step to the max instead, which differs only when (max - start) is not a multiple of the step.

Options: `order="code"` raises the lower bound first (the released code); `target="pos_neg_ratio"` reads
rho0 as the code's pos/neg ratio target (share rho0 <-> ratio rho0 / (1 - rho0)).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

Order = Literal["paper", "code"]
Target = Literal["share", "pos_neg_ratio"]
Measure = Literal["gradient", "value"]
ORDERS: tuple[str, ...] = get_args(Order)
TARGETS: tuple[str, ...] = get_args(Target)
MEASURES: tuple[str, ...] = get_args(Measure)

# A bound reaches its max when (max - start) / step is an integer up to this slack (0.3 / 0.02 = 14.999...).
_GRID_SLACK = 1e-9


@dataclass(frozen=True)
class BapoConfig:
    """Search settings. Defaults are the paper's (v1 section 5.1); the released code's are in the docs."""

    __pydantic_config__ = {"extra": "forbid"}  # unknown keys in a recipe are errors, not silently ignored

    rho0: float = 0.4
    """Target: the minimum positive share in (0, 1) (target='share'), or the minimum pos/neg ratio > 0
    (target='pos_neg_ratio')."""
    low_start: float = 0.6
    """a-: first lower ratio bound."""
    low_max: float = 0.9
    """b-: the lower bound never goes above this."""
    low_step: float = 0.02
    """delta2: lower-bound step."""
    high_start: float = 1.2
    """a+: first upper ratio bound."""
    high_max: float = 3.0
    """b+: the upper bound never goes above this."""
    high_step: float = 0.05
    """delta1: upper-bound step."""
    order: Order = "paper"
    """'paper': upper bound first, then lower (Algorithm 1). 'code': lower first, then upper (released code)."""
    target: Target = "share"
    """'share': positive share >= rho0 (Eq. 8). 'pos_neg_ratio': pos/neg >= rho0 (released code's adv_ratio_target)."""
    measure: Measure = "gradient"
    """'gradient': count gradient-carrying tokens only (monotone; rlbal default). 'value': literal loss values
    (Eq. 8 / code)."""

    def __post_init__(self) -> None:
        for name, allowed in (("order", ORDERS), ("target", TARGETS), ("measure", MEASURES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"BapoConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if not (0.0 < self.rho0 < 1.0 if self.target == "share" else self.rho0 > 0.0):
            bound = "in (0, 1)" if self.target == "share" else "> 0"
            raise ValueError(f"BapoConfig.rho0 must be {bound} for target={self.target!r}, got {self.rho0}")
        for name in ("low_step", "high_step", "low_start"):
            if not getattr(self, name) > 0.0:
                raise ValueError(f"BapoConfig.{name} must be > 0, got {getattr(self, name)}")
        # Bounds are absolute ratios: the clip range must always contain 1, so c_low <= 1 <= c_high.
        if not self.low_start <= self.low_max <= 1.0:
            raise ValueError(f"BapoConfig.low_max must be in [low_start={self.low_start}, 1], got {self.low_max}")
        if not 1.0 <= self.high_start:
            raise ValueError(f"BapoConfig.high_start must be >= 1, got {self.high_start}")
        if not self.high_start <= self.high_max:
            raise ValueError(f"BapoConfig.high_max must be >= high_start={self.high_start}, got {self.high_max}")

    def upper_grid(self) -> np.ndarray:
        """(H,) candidate upper bounds a+, a+ + delta1, ..., never above b+."""
        return _grid(self.high_start, self.high_max, self.high_step)

    def lower_grid(self) -> np.ndarray:
        """(L,) candidate lower bounds a-, a- + delta2, ..., never above b-."""
        return _grid(self.low_start, self.low_max, self.low_step)


def _grid(start: float, stop: float, step: float) -> np.ndarray:
    # Integer step counts, not repeated `+= step`: float accumulation would drop the last step (1.2 + 36 x 0.05).
    # Rounding to 1e-12 removes the remaining noise (0.6 + 15 x 0.02 = 0.8999999999999999 -> 0.9).
    n = int(np.floor((stop - start) / step + _GRID_SLACK))
    return np.minimum(np.round(start + step * np.arange(n + 1), 12), stop)


@dataclass(frozen=True)
class ContributionTables:
    """Loss mass of each side at every candidate bound. Plain sums: add them across micro-batches or ranks.

    pos_H: (H,) positive-advantage contribution at each upper candidate `cfg.upper_grid()`.
    neg_L: (L,) negative-advantage contribution (absolute value) at each lower candidate `cfg.lower_grid()`.
    """

    pos_H: np.ndarray
    neg_L: np.ndarray


@dataclass(frozen=True)
class BapoBounds:
    """The bounds one update uses, and how the search got there."""

    c_low: float
    c_high: float
    share: float  # positive share pos / (pos + neg) at (c_low, c_high); 0 when both sides are empty
    pos_neg_ratio: float  # pos / neg there; inf when neg == 0 < pos, 0 when pos == 0
    n_steps: int  # bound moves made; 0 = the start bounds were kept
    reached: bool  # whether the target was met (False: the search ran out of candidates)
    measure: str  # which share definition was used (see the module docstring)

    def metrics(self) -> dict[str, float]:
        """Flat namespaced floats for the step log (the learner averages them over the step's updates)."""
        return {
            "controller/bapo/c_low": self.c_low,
            "controller/bapo/c_high": self.c_high,
            "controller/bapo/pos_share": self.share,
            "controller/bapo/search_steps": float(self.n_steps),
            "controller/bapo/reached": float(self.reached),
        }


def bapo_search(ratio, adv, mask, cfg: BapoConfig) -> BapoBounds:
    """Bounds for one update from per-token ratios, advantages and a 0/1 loss mask.

    ratio: any shape, e.g. (B, L) or flattened (T,): pi_theta / pi_old per token.
    adv:   broadcastable to ratio's shape: per token, or per sequence as adv_B[:, None].
    mask:  broadcastable to ratio's shape: 1 (or True) on tokens that carry loss.
    """
    return pick_bounds(contribution_tables(ratio, adv, mask, cfg), cfg)


def contribution_tables(ratio, adv, mask, cfg: BapoConfig) -> ContributionTables:
    """Both sides' contribution at every candidate bound: O(T log K) with K candidates, no (K, T) matrix."""
    r_T, a_T = _masked_tokens(ratio, adv, mask)
    pos, neg = a_T > 0, a_T < 0
    pos_fn, neg_fn = _MEASURES[cfg.measure]
    return ContributionTables(
        pos_H=pos_fn(r_T[pos], a_T[pos], cfg.upper_grid()),
        neg_L=neg_fn(r_T[neg], -a_T[neg], cfg.lower_grid()),
    )


def pick_bounds(tables: ContributionTables, cfg: BapoConfig) -> BapoBounds:
    """Walk the search path (`search_path`) and stop at the first candidate that meets the target."""
    c_high_H, c_low_L = cfg.upper_grid(), cfg.lower_grid()
    pos_H, neg_L = np.asarray(tables.pos_H, np.float64), np.asarray(tables.neg_L, np.float64)
    if pos_H.shape != c_high_H.shape or neg_L.shape != c_low_L.shape:
        raise ValueError(
            f"tables do not match the config's grids: pos_H {pos_H.shape} vs {c_high_H.shape}, "
            f"neg_L {neg_L.shape} vs {c_low_L.shape}"
        )
    i_S, j_S = search_path(len(c_high_H), len(c_low_L), cfg.order)
    pos_S, neg_S = pos_H[i_S], neg_L[j_S]
    share_S = _safe_divide(pos_S, pos_S + neg_S, empty=0.0)
    ratio_S = _safe_divide(pos_S, neg_S, empty=np.inf)
    ratio_S[pos_S == 0.0] = 0.0  # as the released code: 0 / (0 + eps) = 0, never met
    met_S = share_S >= cfg.rho0 if cfg.target == "share" else ratio_S >= cfg.rho0
    # No token carries loss at any candidate (all masked, zero advantages): nothing to balance, keep the start.
    no_signal = not (pos_H.any() or neg_L.any())
    s = 0 if no_signal else (int(np.argmax(met_S)) if met_S.any() else len(i_S) - 1)
    return BapoBounds(
        c_low=float(c_low_L[j_S[s]]),
        c_high=float(c_high_H[i_S[s]]),
        share=float(share_S[s]),
        pos_neg_ratio=float(ratio_S[s]),
        n_steps=s,
        reached=bool(met_S[s]),
        measure=cfg.measure,
    )


def search_path(n_high: int, n_low: int, order: str) -> tuple[np.ndarray, np.ndarray]:
    """(S,) upper and lower grid indices visited in order, S = n_high + n_low - 1; step s = s bound moves.

    Paper: (0,0) (1,0) ... (H-1,0) (H-1,1) ... (H-1,L-1). Code: (0,0) (0,1) ... (0,L-1) (1,L-1) ... (H-1,L-1).
    Algorithm 1's loop guard `c_low + delta2 <= b-` would also stop the upper moves when the lower bound
    cannot move at all (a- == b-); that reads as an accident, so the upper bound still moves here.
    """
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    n_first, n_second = (n_high, n_low) if order == "paper" else (n_low, n_high)
    first_S = np.concatenate([np.arange(n_first), np.full(n_second - 1, n_first - 1)])
    second_S = np.concatenate([np.zeros(n_first - 1, np.int64), np.arange(n_second)])
    return (first_S, second_S) if order == "paper" else (second_S, first_S)


def _masked_tokens(ratio, adv, mask) -> tuple[np.ndarray, np.ndarray]:
    """(T',) float64 ratios and advantages of the tokens under the mask."""
    r = np.asarray(ratio, dtype=np.float64)
    a = np.asarray(adv, dtype=np.float64)
    m = np.asarray(mask)
    for name, x in (("adv", a), ("mask", m)):
        if not _broadcasts_to(x.shape, r.shape):
            raise ValueError(f"{name} of shape {x.shape} does not broadcast to ratio's shape {r.shape}")
    keep = np.broadcast_to(m, r.shape) > 0
    return r[keep], np.broadcast_to(a, r.shape)[keep]


def _broadcasts_to(shape: tuple[int, ...], target: tuple[int, ...]) -> bool:
    tail = target[len(target) - len(shape) :] if shape else ()
    return len(shape) <= len(target) and all(d in (1, t) for d, t in zip(shape, tail))


def _prefix(bins: np.ndarray, w: np.ndarray, n: int) -> np.ndarray:
    """(n,) out[k] = sum of w over tokens with bin <= k."""
    return np.cumsum(np.bincount(bins, weights=w, minlength=n + 1))[:n]


def _suffix_after(bins: np.ndarray, w: np.ndarray, n: int) -> np.ndarray:
    """(n,) out[k] = sum of w over tokens with bin > k (a reversed cumsum, so an empty tail is exactly 0)."""
    return np.cumsum(np.bincount(bins, weights=w, minlength=n + 1)[::-1])[::-1][1:]


def _pos_gradient(r_P: np.ndarray, a_P: np.ndarray, c_high_H: np.ndarray) -> np.ndarray:
    # A token counts at candidate i iff r < c_high[i]; `first` = number of candidates <= r.
    first = np.searchsorted(c_high_H, r_P, side="right")
    return _prefix(first, r_P * a_P, len(c_high_H))


def _pos_value(r_P: np.ndarray, a_P: np.ndarray, c_high_H: np.ndarray) -> np.ndarray:
    # sum A*min(r, c_high) = sum_{r < c_high} r*A + c_high * sum_{r >= c_high} A.
    first = np.searchsorted(c_high_H, r_P, side="right")
    n = len(c_high_H)
    return _prefix(first, r_P * a_P, n) + c_high_H * _suffix_after(first, a_P, n)


def _neg_gradient(r_N: np.ndarray, absa_N: np.ndarray, c_low_L: np.ndarray) -> np.ndarray:
    # A token counts at candidate j iff r > c_low[j]; `below` = number of candidates < r.
    below = np.searchsorted(c_low_L, r_N, side="left")
    return _suffix_after(below, r_N * absa_N, len(c_low_L))


def _neg_value(r_N: np.ndarray, absa_N: np.ndarray, c_low_L: np.ndarray) -> np.ndarray:
    # sum |A|*max(r, c_low) = sum_{r > c_low} |A|*r + c_low * sum_{r <= c_low} |A|.
    below = np.searchsorted(c_low_L, r_N, side="left")
    n = len(c_low_L)
    return _suffix_after(below, r_N * absa_N, n) + c_low_L * _prefix(below, absa_N, n)


_MEASURES = {"gradient": (_pos_gradient, _neg_gradient), "value": (_pos_value, _neg_value)}


def _safe_divide(num: np.ndarray, den: np.ndarray, empty: float) -> np.ndarray:
    out = np.full(num.shape, empty, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out
