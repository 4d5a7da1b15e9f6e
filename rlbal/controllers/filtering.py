"""Online difficulty filtering: keep only informative groups, and refill the batch until it holds N of them.

Online difficulty filtering (Bae et al. 2025, arXiv 2504.03380) trains on prompts the current policy solves
only sometimes: after a prompt's group of rollouts is scored, the group is kept iff its pass rate lies in a
band [low, high] balanced around 0.5. DAPO's dynamic sampling (arXiv 2503.14476) is the open band (0, 1),
"not all rewards equal"; `rule="std"` states that for any reward scale: keep iff the group's reward std > tol
(a float tolerance, never an exact `!= 0`). The trainer over-samples prompts and runs generation rounds until
N groups qualify, at most `max_rounds` rounds:

    fill = group_filter.start(target_groups=N)
    while not fill.done:
        prompts = source.next(fill.request_size())
        ...generate and score: scores_R per response, counts_G responses per prompt...
        kept_K = fill.add(prompt_ids, scores_R, counts_G)   # positions among this round's groups to train on
    result = fill.result()    # exactly N groups in arrival order (fewer only with on_exhausted="partial")

    >>> filt = GroupFilter(FilterConfig(low=0.2, high=0.8))
    >>> fill = filt.start(target_groups=2)
    >>> fill.request_size()
    2
    >>> # groups of 4: 'a' 0/4 correct (too hard), 'b' 2/4 (kept); 'c' 4/4 (too easy), 'b' again (duplicate),
    >>> # 'd' 1/4 (kept)
    >>> fill.add(["a", "b"], [0, 0, 0, 0, 1, 0, 1, 0], [4, 4]).tolist()
    [1]
    >>> fill.add(["c", "b", "d"], [1, 1, 1, 1, 1, 0, 1, 0, 0, 0, 1, 0], [4, 4, 4]).tolist()
    [2]
    >>> r = fill.result(); r.prompt_ids, r.dropped["too_hard"], r.dropped["too_easy"], r.dropped["duplicate"]
    (('b', 'd'), 1, 1, 1)

Scores are per response: 0/1 correctness for the pass-rate band (the driver thresholds rewards with
`reward.correct_threshold`), or raw rewards with `rule="std"` (or a band on the mean reward).
A prompt seen twice within one fill is judged once: later copies are dropped as "duplicate", so a prompt
is never kept twice and a second draw cannot rescue a prompt the first one rejected (`drop_duplicates`;
the driver's keep-everything filter, used when no filter is configured, keeps copies).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

logger = logging.getLogger(__name__)

Rule = Literal["band", "std"]
OnExhausted = Literal["error", "partial"]
RULES: tuple[str, ...] = get_args(Rule)
ON_EXHAUSTED: tuple[str, ...] = get_args(OnExhausted)
# Decision codes; index 0 = kept, the others are drop reasons.
REASONS: tuple[str, ...] = ("kept", "too_small", "too_hard", "too_easy", "no_variance", "duplicate")
KEPT, TOO_SMALL, TOO_HARD, TOO_EASY, NO_VARIANCE, DUPLICATE = range(len(REASONS))
DROP_REASONS = REASONS[1:]


class FillExhaustedError(RuntimeError):
    """The batch could not be filled within `max_rounds` generation rounds (on_exhausted='error')."""


@dataclass(frozen=True)
class FilterConfig:
    """Which groups are kept and how the batch is refilled.

    The paper's band is not published; the default [0.2, 0.8] (closed) is balanced around 0.5, drops
    all-wrong and all-right groups at any group size, and is the example third-party re-implementations
    use. DAPO dynamic sampling: rule='std', or low=0, high=1 with both ends open.
    """

    __pydantic_config__ = {"extra": "forbid"}  # unknown keys in a recipe are errors, not silently ignored

    rule: Rule = "band"
    """'band': keep iff the group's mean score (its pass rate for 0/1 scores) is in the band. 'std': keep iff its score
    std > tol."""
    low: float = 0.2
    """Lower end of the band (groups below it are 'too_hard')."""
    high: float = 0.8
    """Upper end of the band (groups above it are 'too_easy')."""
    low_closed: bool = True
    """Whether a group exactly at `low` is kept."""
    high_closed: bool = True
    """Whether a group exactly at `high` is kept."""
    tol: float = 1e-6
    """Float tolerance: a mean within tol of a band end is *at* it; a std <= tol means all scores are equal."""
    min_group_size: int = 2
    """Groups with fewer scored responses are dropped ('too_small'): one response has no group-relative signal."""
    oversample: float = 1.0
    """Request this many times the prompts still needed (before the keep-rate correction below)."""
    keep_rate_beta: float = 0.5
    """EMA rate of the running fraction of groups that qualify; requests are divided by it (0 = never adapt)."""
    min_keep_rate: float = 0.1
    """Floor of that fraction, so one bad round cannot make a request explode (at most 1/min_keep_rate times)."""
    max_rounds: int = 10
    """Generation rounds per fill (verl's max_num_gen_batches); then `on_exhausted` applies."""
    on_exhausted: OnExhausted = "error"
    """'error': raise FillExhaustedError. 'partial': log a warning and return the groups kept so far."""
    drop_duplicates: bool = True
    """A prompt drawn twice within one fill (a batch that straddles an epoch boundary, a refill) is judged once and
    later copies are dropped; False keeps every copy as a group of its own."""

    def __post_init__(self) -> None:
        for name, allowed in (("rule", RULES), ("on_exhausted", ON_EXHAUSTED)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"FilterConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}")
        checks = (
            ("high", self.high > self.low, f"> low={self.low}"),
            ("tol", self.tol > 0.0, "> 0 (exact float equality is never used)"),
            ("min_group_size", self.min_group_size >= 1, ">= 1"),
            ("oversample", self.oversample >= 1.0, ">= 1"),
            ("keep_rate_beta", 0.0 <= self.keep_rate_beta <= 1.0, "in [0, 1]"),
            ("min_keep_rate", 0.0 < self.min_keep_rate <= 1.0, "in (0, 1]"),
            ("max_rounds", self.max_rounds >= 1, ">= 1"),
        )
        for name, ok, rule in checks:
            if not ok:
                raise ValueError(f"FilterConfig.{name} must be {rule}, got {getattr(self, name)!r}")


def group_stats(scores_R, counts_G) -> tuple[np.ndarray, np.ndarray]:
    """(G,) mean and population std of each group's scores; groups are consecutive runs of counts_G responses.

    >>> m, s = group_stats([1, 0, 1, 1, 0, 0, 1], [4, 2, 1]); m.tolist(), s.round(4).tolist()
    ([0.75, 0.0, 1.0], [0.433, 0.0, 0.0])
    """
    scores_R = np.asarray(scores_R, dtype=np.float64)
    counts_G = np.asarray(counts_G, dtype=np.int64)
    if counts_G.ndim != 1 or (counts_G < 0).any() or counts_G.sum() != scores_R.size:
        raise ValueError(f"counts_G must be non-negative and sum to len(scores_R)={scores_R.size}, got {counts_G}")
    g_R = np.repeat(np.arange(len(counts_G)), counts_G)
    n_G = np.maximum(counts_G, 1)  # empty groups get mean 0, std 0 (and are dropped as too small)
    mean_G = np.bincount(g_R, scores_R, minlength=len(counts_G)) / n_G
    # Two passes (deviations from the mean), so identical scores give std ~1e-17, not cancellation noise.
    var_G = np.bincount(g_R, (scores_R - mean_G[g_R]) ** 2, minlength=len(counts_G)) / n_G
    return mean_G, np.sqrt(var_G)


def decide(cfg: FilterConfig, mean_G: np.ndarray, std_G: np.ndarray, size_G: np.ndarray) -> np.ndarray:
    """(G,) int8 decision code per group (index into REASONS), ignoring duplicates."""
    code_G = np.full(len(mean_G), KEPT, dtype=np.int8)
    if cfg.rule == "std":
        code_G[std_G <= cfg.tol] = NO_VARIANCE
    else:
        above_low = mean_G >= cfg.low - cfg.tol if cfg.low_closed else mean_G > cfg.low + cfg.tol
        below_high = mean_G <= cfg.high + cfg.tol if cfg.high_closed else mean_G < cfg.high - cfg.tol
        code_G[~below_high] = TOO_EASY
        code_G[~above_low] = TOO_HARD
    code_G[size_G < cfg.min_group_size] = TOO_SMALL
    return code_G


@dataclass(frozen=True)
class FillResult:
    """The groups one fill kept, in arrival order, and what happened to the others."""

    prompt_ids: tuple  # (K,) kept prompt ids; K == target unless partial
    round_K: np.ndarray  # (K,) generation round (0-based `add` call) of each kept group
    index_K: np.ndarray  # (K,) its position among all groups submitted to this fill, in submission order
    target: int
    rounds: int
    submitted: int  # groups scored over all rounds
    dropped: dict[str, int]  # per reason in DROP_REASONS
    surplus: int  # groups that qualified after the batch was full: generated but not used
    partial: bool

    def metrics(self) -> dict[str, float]:
        qualified = len(self.prompt_ids) + self.surplus
        out = {
            "filter/kept": float(len(self.prompt_ids)),
            "filter/target": float(self.target),
            "filter/rounds": float(self.rounds),
            "filter/submitted": float(self.submitted),
            "filter/qualify_rate": qualified / self.submitted if self.submitted else 0.0,
            "filter/surplus": float(self.surplus),
            "filter/partial": float(self.partial),
        }
        out.update({f"filter/dropped/{k}": float(v) for k, v in self.dropped.items()})
        return out


class BatchFill:
    """One step's refill loop (a small state machine); create it with `GroupFilter.start`."""

    def __init__(self, owner: GroupFilter, target_groups: int):
        if target_groups < 1:
            raise ValueError(f"target_groups must be >= 1, got {target_groups}")
        self._owner, self._cfg, self.target = owner, owner.cfg, target_groups
        self._visited: set = set()  # prompt ids judged in this fill
        self._kept_ids: list = []
        self._kept_round: list[np.ndarray] = []
        self._kept_index: list[np.ndarray] = []
        self._dropped = dict.fromkeys(DROP_REASONS, 0)
        self.rounds = self._submitted = self._surplus = 0

    @property
    def kept(self) -> int:
        return len(self._kept_ids)

    @property
    def done(self) -> bool:
        return self.kept >= self.target or self.rounds >= self._cfg.max_rounds

    def request_size(self) -> int:
        """Prompts to generate next: the shortfall x oversample / the running qualify rate, rounded up."""
        self._check_open("request_size")
        rate = max(self._owner.keep_rate, self._cfg.min_keep_rate)
        # The 1e-9 keeps an exact product (2 / 0.5 = 4.000...01 after rounding) from costing one extra prompt.
        return max(1, math.ceil((self.target - self.kept) * self._cfg.oversample / rate - 1e-9))

    def add(self, prompt_ids: Sequence, scores_R, counts_G) -> np.ndarray:
        """Judge one round of scored groups; returns the (K,) positions among them that join the batch."""
        self._check_open("add")
        ids = prompt_ids.tolist() if isinstance(prompt_ids, np.ndarray) else list(prompt_ids)
        mean_G, std_G = group_stats(scores_R, counts_G)
        if len(ids) != len(mean_G):
            raise ValueError(f"{len(ids)} prompt ids but {len(mean_G)} groups in counts_G")
        code_G = decide(self._cfg, mean_G, std_G, np.asarray(counts_G))
        if self._cfg.drop_duplicates:
            code_G[self._duplicates(ids)] = DUPLICATE
        kept_K = self._admit(ids, code_G)
        self._owner._observe_round(len(ids), int((code_G == KEPT).sum()))
        self.rounds += 1
        if self.done:
            self._finish()
        return kept_K

    def result(self) -> FillResult:
        if not self.done:
            raise RuntimeError(f"fill is not done: {self.kept} of {self.target} groups after {self.rounds} rounds")
        return FillResult(
            prompt_ids=tuple(self._kept_ids),
            round_K=np.concatenate([np.zeros(0, np.int64), *self._kept_round]),
            index_K=np.concatenate([np.zeros(0, np.int64), *self._kept_index]),
            target=self.target,
            rounds=self.rounds,
            submitted=self._submitted,
            dropped=dict(self._dropped),
            surplus=self._surplus,
            partial=self.kept < self.target,
        )

    def _duplicates(self, ids: list) -> np.ndarray:
        """(G,) True where the id was already judged in this fill (earlier round or earlier in this round)."""
        dup_G = np.zeros(len(ids), dtype=bool)
        for g, pid in enumerate(ids):  # per group (hundreds per round), not per token
            dup_G[g] = pid in self._visited
            self._visited.add(pid)
        return dup_G

    def _admit(self, ids: list, code_G: np.ndarray) -> np.ndarray:
        """Take qualifying groups in order up to the target; count the rest per reason."""
        qualified = np.flatnonzero(code_G == KEPT)
        kept_K = qualified[: self.target - self.kept]
        self._surplus += len(qualified) - len(kept_K)
        counts = np.bincount(code_G, minlength=len(REASONS))
        for code, name in enumerate(REASONS[1:], start=1):
            self._dropped[name] += int(counts[code])
        self._kept_ids += [ids[k] for k in kept_K]
        self._kept_round.append(np.full(len(kept_K), self.rounds, np.int64))
        self._kept_index.append(kept_K + self._submitted)
        self._submitted += len(ids)
        return kept_K

    def _finish(self) -> None:
        result = self.result()
        self._owner._observe_fill(result)
        if not result.partial:
            return
        summary = ", ".join(f"{k}={v}" for k, v in result.dropped.items())
        msg = (
            f"GroupFilter: only {len(result.prompt_ids)} of {self.target} groups qualified after {self.rounds} rounds "
            f"({result.submitted} groups scored; dropped: {summary})"
        )
        if self._cfg.on_exhausted == "error":
            raise FillExhaustedError(
                f"{msg}. Widen [low, high], raise max_rounds or oversample, or set on_exhausted='partial'"
            )
        logger.warning("%s; training on a partial batch", msg)

    def _check_open(self, what: str) -> None:
        if self.done:
            raise RuntimeError(f"{what}() on a finished fill ({self.kept}/{self.target} groups, {self.rounds} rounds)")


class GroupFilter:
    """Online difficulty filter with batch refill: config, a running qualify rate, and cumulative counts."""

    def __init__(self, cfg: FilterConfig):
        self.cfg = cfg
        self.keep_rate = 1.0  # running fraction of submitted groups that qualify (EMA over rounds)
        self._totals = dict.fromkeys(_TOTAL_KEYS, 0)
        self._last: FillResult | None = None

    def start(self, target_groups: int) -> BatchFill:
        return BatchFill(self, target_groups)

    def metrics(self) -> dict[str, float]:
        """The last fill's counts, the running qualify rate, and totals since the start of training."""
        out = dict(self._last.metrics()) if self._last is not None else {}
        out["filter/keep_rate_est"] = self.keep_rate
        out.update({f"filter/total/{k}": float(v) for k, v in self._totals.items()})
        return out

    def state_dict(self) -> dict:
        """JSON-serialisable. A fill in progress is not saved: checkpoints are taken between steps."""
        return {"kind": "group_filter", "keep_rate": self.keep_rate, "totals": dict(self._totals)}

    def load_state_dict(self, state: dict) -> None:
        if state.get("kind") != "group_filter" or set(state.get("totals", {})) != set(_TOTAL_KEYS):
            raise ValueError(
                f"not a GroupFilter checkpoint (kind={state.get('kind')!r}, totals keys "
                f"{sorted(state.get('totals', {}))}; expected {sorted(_TOTAL_KEYS)})"
            )
        self.keep_rate = float(state["keep_rate"])
        self._totals = {k: int(v) for k, v in state["totals"].items()}

    def _observe_round(self, submitted: int, qualified: int) -> None:
        beta = self.cfg.keep_rate_beta
        if submitted:
            self.keep_rate = (1.0 - beta) * self.keep_rate + beta * qualified / submitted

    def _observe_fill(self, result: FillResult) -> None:
        self._last = result
        t = self._totals
        t["fills"] += 1
        t["partial_fills"] += int(result.partial)
        t["rounds"] += result.rounds
        t["submitted"] += result.submitted
        t["kept"] += len(result.prompt_ids)
        t["surplus"] += result.surplus


_TOTAL_KEYS = ("fills", "partial_fills", "rounds", "submitted", "kept", "surplus")
