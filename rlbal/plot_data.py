"""The numbers behind `rlbal plot` (rlbal.plot): a run's metrics as columns, per-bin families as step x bin
matrices (counts as shares, empty bins blank), curves grouped into figures by namespace, units, smoothing.
Nothing here draws (rlbal.plot_draw does).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from rlbal.logging import read_metrics

BIN_KEY = re.compile(r"^(?P<family>.+)/bin_(?P<bin>\d+)$")
# A curve's figure, first matching rule wins (None = not plotted): held-out accuracy, each eval level and task
# get a figure; other keys group by their first two parts when they have three or more (one figure per
# controller, `reward/outcome`, `filter/dropped`, ...), else by their first part (`reward`, `loss`, `timing`).
GROUP_RULES = (
    (re.compile(r"/n_prompts$"), None),  # constant prompt counts: not worth a panel
    (re.compile(r"^eval/(?:greedy/)?(?:pass|mean)@\d+$"), "eval"),
    (re.compile(r"^(eval/(?:level|task)_[^/]+)/"), r"\1"),
    (re.compile(r"^eval/"), "eval_details"),
    (re.compile(r"^([^/]+/[^/]+)/"), r"\1"),
    (re.compile(r"^([^/]+)/"), r"\1"),
)
COUNT_FAMILY = re.compile(r"(^|/)count$")  # per-bin counts are drawn as shares of the step's binned prompts
STATE_FAMILY = re.compile(r"/(weight|score|variance|pass_rate)$")  # controller state: defined for empty bins too
BIN_COUNT = "controller/classifier/count"  # prompts per bin of a step, when a family's namespace has no count


@dataclass(frozen=True)
class RunLog:
    """One run's metrics as columns over its logged steps (a step logged twice keeps its last value)."""

    name: str
    steps_S: np.ndarray  # (S,) int64, sorted, unique
    wall_S: np.ndarray  # (S,) float64 seconds since start, nan where not logged
    columns: dict[str, np.ndarray]  # key -> (S,) float64, nan at steps where the key was not logged

    def series(self, key: str, x: Literal["step", "wall"] = "step") -> tuple[np.ndarray, np.ndarray]:
        """(x_P, y_P) over the P steps where `key` was logged."""
        y_S = self.columns[key]
        x_S = self.steps_S.astype(np.float64) if x == "step" else self.wall_S
        keep_S = np.isfinite(y_S) & np.isfinite(x_S)
        return x_S[keep_S], y_S[keep_S]


@dataclass(frozen=True)
class BinMatrix:
    """A per-bin metric family as a step x bin matrix: what a heatmap draws."""

    steps_S: np.ndarray  # (S,) int64, the steps where any bin of the family was logged
    bins_B: np.ndarray  # (B,) int64, 0..max logged bin (bins never logged are all-nan columns)
    values_SB: np.ndarray  # (S, B) float64, nan where a bin was not logged at that step


def load_run(run_dir: Path, name: str | None = None) -> RunLog:
    """Columns of RUN/metrics.jsonl; rows without an integer `step` and non-numeric values are ignored."""
    rows = [r for r in read_metrics(Path(run_dir)) if isinstance(r.get("step"), int)]
    steps_S = np.unique(np.array([r["step"] for r in rows], dtype=np.int64))
    row_of = np.searchsorted(steps_S, [r["step"] for r in rows])
    columns: dict[str, np.ndarray] = {}
    for i, row in zip(row_of, rows):  # file order: a re-logged step overwrites with its later value
        for key, value in row.items():
            if key != "step" and isinstance(value, (int, float)):
                columns.setdefault(key, np.full(len(steps_S), np.nan))[i] = value
    wall_S = columns.pop("wall", np.full(len(steps_S), np.nan))
    return RunLog(name or Path(run_dir).name, steps_S, wall_S, columns)


def bin_families(run: RunLog) -> set[str]:
    """Names `<family>` of every `<family>/bin_<b>` key of the run."""
    return {m["family"] for key in run.columns if (m := BIN_KEY.match(key))}


def bin_matrix(run: RunLog, family: str) -> BinMatrix:
    """Step x bin matrix of `<family>/bin_<b>`, over the steps where at least one bin was logged.

    >>> run = RunLog("r", np.array([1, 2]), np.full(2, np.nan),
    ...              {"w/bin_0": np.array([0.5, np.nan]), "w/bin_2": np.array([1.5, 2.5])})
    >>> bin_matrix(run, "w").values_SB
    array([[0.5, nan, 1.5],
           [nan, nan, 2.5]])
    """
    found = {int(m["bin"]): key for key in run.columns if (m := BIN_KEY.match(key)) and m["family"] == family}
    if not found:
        raise KeyError(f"run {run.name!r} has no keys '{family}/bin_<b>'")
    bins_B = np.arange(max(found) + 1, dtype=np.int64)
    nan_S = np.full(len(run.steps_S), np.nan)
    values_SB = np.stack([run.columns[found[b]] if b in found else nan_S for b in bins_B], axis=1)
    logged_S = ~np.isnan(values_SB).all(axis=1)
    return BinMatrix(run.steps_S[logged_S], bins_B, values_SB[logged_S])


def as_shares(m: BinMatrix) -> BinMatrix:
    """Counts per bin -> each step's share per bin (count / the step's total over bins); a bin with count 0
    or none logged is nan (blank: no prompt was there).

    >>> as_shares(BinMatrix(np.array([1]), np.arange(4), np.array([[1.0, np.nan, 3.0, 0.0]]))).values_SB
    array([[0.25,  nan, 0.75,  nan]])
    """
    total_S = np.nansum(m.values_SB, axis=1, keepdims=True)
    share_SB = m.values_SB / np.where(total_S > 0, total_S, 1.0)
    return BinMatrix(m.steps_S, m.bins_B, np.where(m.values_SB > 0, share_SB, np.nan))


def empty_bins(run: RunLog, family: str, m: BinMatrix) -> np.ndarray:
    """(S, B) bool over m's steps and bins: the bin held no prompt at that step (its count is 0). The count is
    the family's own namespace's `count` family if logged, else the classifier's; unknown counts are False.

    >>> run = RunLog("r", np.array([1, 2]), np.full(2, np.nan), {
    ...     "controller/classifier/count/bin_0": np.array([4.0, 0.0]),
    ...     "controller/classifier/count/bin_1": np.array([0.0, 4.0]),
    ...     "controller/rollout_gdro/n/bin_0": np.array([6.0, 6.0])})
    >>> empty_bins(run, "controller/rollout_gdro/n", bin_matrix(run, "controller/rollout_gdro/n"))
    array([[False],
           [ True]])
    """
    own = f"{family.rsplit('/', 1)[0]}/count"
    source = own if own in bin_families(run) else BIN_COUNT
    empty_SB = np.zeros(m.values_SB.shape, dtype=bool)
    if source not in bin_families(run):
        return empty_SB
    counts = bin_matrix(run, source)
    row_S = np.searchsorted(counts.steps_S, m.steps_S)
    found_S = (row_S < len(counts.steps_S)) & (counts.steps_S[np.minimum(row_S, len(counts.steps_S) - 1)] == m.steps_S)
    for j, b in enumerate(m.bins_B):
        if b < len(counts.bins_B):
            empty_SB[found_S, j] = counts.values_SB[row_S[found_S], b] == 0
    return empty_SB


def share_family(family: str) -> str:
    """`a/count` -> `a/share` (the name a count family's heatmap is shown under); other names unchanged."""
    return COUNT_FAMILY.sub(r"\1share", family)


def heatmap_matrix(run: RunLog, family: str) -> tuple[BinMatrix, str]:
    """What the heatmap of a family draws, and its label: shares for `.../count` families, else the values,
    with bins that held no prompt at a step blank (nan) unless the family is controller state."""
    m = bin_matrix(run, family)
    if COUNT_FAMILY.search(family):
        return as_shares(m), f"{share_family(family)} (count / step total)"
    if BIN_COUNT in bin_families(run) and (n_bins := len(bin_matrix(run, BIN_COUNT).bins_B)) > len(m.bins_B):
        pad_SB = np.full((len(m.steps_S), n_bins - len(m.bins_B)), np.nan)  # bins this family never logged
        m = BinMatrix(m.steps_S, np.arange(n_bins), np.concatenate([m.values_SB, pad_SB], axis=1))
    if not STATE_FAMILY.search(family):
        m = BinMatrix(m.steps_S, m.bins_B, np.where(empty_bins(run, family, m), np.nan, m.values_SB))
    return m, family


def heatmap_name(family: str) -> str:
    """File stem of a family's heatmap.

    >>> heatmap_name("controller/classifier/count"), heatmap_name("controller/prompt_gdro/weight")
    ('heatmap_controller_classifier_share', 'heatmap_controller_prompt_gdro_weight')
    """
    return f"heatmap_{slug(share_family(family))}"


def curve_group(key: str) -> str | None:
    """The figure a non-bin metric belongs to (None: not plotted, e.g. a key without a namespace).

    >>> [curve_group(k) for k in ("controller/rollout_gdro/dual_mu", "controller/rollout_gdro/alloc/min",
    ...                           "eval/level_2/pass@4", "eval/greedy/pass@1", "eval/outcome/wrong",
    ...                           "reward/outcome/wrong", "reward/mean", "eval/n_prompts", "wall")]
    ['controller/rollout_gdro', 'controller/rollout_gdro', 'eval/level_2', 'eval', 'eval_details', \
'reward/outcome', 'reward', None, None]
    """
    if BIN_KEY.match(key):
        return None
    for rule, name in GROUP_RULES:
        if m := rule.search(key):
            return None if name is None else m.expand(name)
    return None


def curve_groups(runs: Sequence[RunLog]) -> dict[str, list[str]]:
    """Figure name -> sorted metric keys logged by any of the runs (`.../pass@1` is left out where
    `.../mean@k` is logged: the unbiased pass@1 equals mean@k)."""
    keys = {key for run in runs for key in run.columns}
    groups: dict[str, set[str]] = {}
    for key in keys:
        if (
            key.endswith("/pass@1")
            and not key.endswith("greedy/pass@1")
            and any(re.fullmatch(re.escape(key[: -len("pass@1")]) + r"mean@\d+", other) for other in keys)
        ):
            continue
        if (group := curve_group(key)) is not None:
            groups.setdefault(group, set()).add(key)
    return {g: sorted(keys) for g, keys in sorted(groups.items())}


def is_flat(runs: Sequence[RunLog], key: str) -> bool:
    """True when `key` has one value in every run, over two or more logged points (a panel would be a line).

    >>> r = RunLog("r", np.array([1, 2]), np.full(2, np.nan), {"a": np.array([8.0, 8.0]), "b": np.array([1.0, 2.0])})
    >>> is_flat([r], "a"), is_flat([r], "b")
    (True, False)
    """
    values = np.concatenate([run.columns[key][np.isfinite(run.columns[key])] for run in runs if key in run.columns])
    return values.size >= 2 and float(values.max() - values.min()) <= 1e-12 * max(1.0, float(np.abs(values).max()))


def unit_of(key: str) -> str:
    """The y-axis unit of a metric from its name: seconds for timings, MB and MB/s for transfer sizes.

    >>> [unit_of(k) for k in ("timing/generate", "eval/timing/score", "reward/seconds", "weight_sync/mbytes",
    ...                       "weight_sync/mbytes_per_s", "ray/init_s", "reward/mean")]
    ['s', 's', 's', 'MB', 'MB/s', 's', '']
    """
    if key.endswith("mbytes_per_s"):
        return "MB/s"
    if key.endswith("mbytes"):
        return "MB"
    if key.startswith("timing/") or "/timing/" in key or key.endswith(("/seconds", "_s")):
        return "s"
    return ""


def ema(y_P: np.ndarray, weight: float) -> np.ndarray:
    """Debiased exponential moving average (TensorBoard's smoothing); weight 0 returns y unchanged.

    >>> ema(np.array([1.0, 3.0]), 0.5)  # [1, (0.5*0.5*1 + 0.5*3) / (1 - 0.25)] = [1, 2.333]
    array([1.        , 2.33333333])
    """
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"smooth must be in [0, 1), got {weight}")
    if weight == 0.0 or len(y_P) == 0:
        return y_P
    # s_t = w s_{t-1} + (1-w) y_t from s_{-1} = 0, divided by 1 - w^(t+1) so early points are not pulled to 0.
    # A scalar recurrence over at most a few thousand points (the closed form w^-t overflows on long runs).
    t_P = np.arange(len(y_P))
    acc_P = np.empty(len(y_P), dtype=np.float64)
    acc = 0.0
    for t, y in enumerate(y_P):
        acc = weight * acc + (1.0 - weight) * y
        acc_P[t] = acc
    return acc_P / (1.0 - weight ** (t_P + 1))


def run_labels(run_dirs: Sequence[Path]) -> list[str]:
    """Run names for legends: the folder name, or the path below the common parent when names clash.

    >>> run_labels([Path("runs/a/seed0"), Path("runs/b/seed0")])
    ['a/seed0', 'b/seed0']
    """
    names = [Path(d).resolve().name for d in run_dirs]
    if len(set(names)) == len(names):
        return names
    paths = [Path(d).resolve() for d in run_dirs]
    common = Path(os.path.commonpath(paths))
    return [str(p.relative_to(common)) or p.name for p in paths]


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9@._-]+", "_", name).strip("_")
