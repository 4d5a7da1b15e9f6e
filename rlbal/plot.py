"""`rlbal plot`: the diagnostic figures of one run, or of several runs overlaid, from RUN/metrics.jsonl.

    rlbal plot runs/grpo                      # PNGs into runs/grpo/plots/
    rlbal plot runs/grpo runs/gdro --out cmp  # one line per run, labelled by run name

Figures are discovered from the metric names, so a renamed or new controller metric is plotted without a
change here:
- every per-bin family `<family>/bin_<b>` (prompt share, adversarial weight, reward per bin, rollout
  allocation, ...) becomes a step x bin heatmap `heatmap_<family>.png` (slashes as underscores), one panel
  per run on a shared colour scale; a `.../count` family is drawn as per-step shares. A bin that held no
  prompt at a step (count 0) is blank there, except for controller state defined for every bin
  (STATE_FAMILY: adversary weights, scores, variance and pass-rate estimates);
- every other metric is a curve over steps (or wall-clock seconds with `--x wall`), grouped into one figure
  per namespace (GROUP_RULES: `curves_eval.png`, `curves_reward.png`, `curves_controller_prompt_gdro.png`,
  ...), one panel per metric with the runs overlaid, units on the y axis (seconds, MB). A metric constant
  in every run is not drawn (named in the log), nor `pass@1` next to `mean@k` (the same number);
- `summary.png` (one page: reward, held-out accuracy per level, timings, and per run the prompt share and
  rollouts per bin and the bin-to-bin migration matrix) and `migration.png`: rlbal.plot_summary.
The paper's diagnostics that no run logged are named in the log. A run killed mid-write plots fine (its
truncated last line is ignored). This module decides what to draw from rlbal.plot_data's numbers; rlbal.plot_draw
draws (matplotlib's object API on the Agg canvas: no display, no global pyplot state).
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from rlbal.plot_data import (
    RunLog,
    bin_families,
    curve_groups,
    ema,
    heatmap_name,
    is_flat,
    load_run,
    run_labels,
    share_family,
    slug,
)
from rlbal.plot_draw import draw_curves, draw_heatmap
from rlbal.plot_summary import draw_migration, draw_summary, load_bin_history, migration_counts

log = logging.getLogger(__name__)

# The paper's diagnostics, only to report which ones no run logged (everything present is plotted anyway).
DIAGNOSTICS = {
    "prompt share per bin": r"^controller/classifier/[^/]*(share|count)[^/]*/bin_\d+$",
    "adversarial weight per bin": r"^controller/prompt_gdro/[^/]*weight[^/]*/bin_\d+$",
    "reward per bin": r"^controller/[^/]+/[^/]*(reward|score)[^/]*/bin_\d+$",
    "rollout allocation per bin": r"^controller/rollout[^/]*/(n|alloc[^/]*|budget_share)/bin_\d+$",
    "mean bin index": r"^controller/classifier/[^/]*mean_bin[^/]*$",
    "weight entropy": r"^controller/prompt_gdro/[^/]*entropy[^/]*$",
    "dual price": r"^controller/rollout[^/]*/[^/]*mu[^/]*$",
    "reward curve": r"^reward/mean$",
    "held-out accuracy": r"^eval/(greedy/)?(pass|mean)@\d+$",
}
MAX_PANELS = 30  # a namespace with more metrics is cut (and logged) so one figure stays readable

# ----------------------------------------------------------------------------- entry points


def _report_absent(runs: Sequence[RunLog]) -> None:
    present = {key for run in runs for key in run.columns}
    for what, pattern in DIAGNOSTICS.items():
        if not any(re.match(pattern, key) for key in present):
            log.info(
                "plot: no %s in %s (no key matching %s); figure skipped", what, ", ".join(r.name for r in runs), pattern
            )


def plot_run(
    run_dirs: Sequence[Path | str] | Path | str,
    out_dir: Path | str | None = None,
    *,
    x: Literal["step", "wall"] = "step",
    smooth: float = 0.0,
) -> list[Path]:
    """Write every figure the runs' metrics allow into out_dir (default: the first run's `plots/`).

    Returns the PNG paths written. Runs without metrics are skipped with a log line; no metrics at all
    returns []. The trainer calls `plot_run(run_dir)` at the end of a run.
    """
    dirs = [Path(run_dirs)] if isinstance(run_dirs, (str, Path)) else [Path(d) for d in run_dirs]
    if not dirs:
        raise ValueError("plot_run needs at least one run directory")
    if x not in ("step", "wall"):
        raise ValueError(f"x must be 'step' or 'wall', got {x!r}")
    ema(np.zeros(0), smooth)  # validates smooth before any work
    loaded = [load_run(d, name) for d, name in zip(dirs, run_labels(dirs))]
    runs = [r for r in loaded if r.columns]
    for r in loaded:
        if not r.columns:
            log.warning("plot: run %s has no metrics (missing or empty metrics.jsonl); skipped", r.name)
    if not runs:
        return []
    out = Path(out_dir) if out_dir is not None else dirs[0] / "plots"
    out.mkdir(parents=True, exist_ok=True)
    _report_absent(runs)
    written = []
    families = set().union(*(bin_families(r) for r in runs))
    for family in sorted(f for f in families if share_family(f) == f or share_family(f) not in families):
        written.append(out / f"{heatmap_name(family)}.png")
        draw_heatmap(runs, family, written[-1])
    flat = []
    for group, keys in curve_groups(runs).items():
        flat += [k for k in keys if is_flat(runs, k)]
        keys = [k for k in keys if not is_flat(runs, k)]
        if not keys:
            continue
        if len(keys) > MAX_PANELS:
            log.info("plot: %s has %d metrics; plotting the first %d", group, len(keys), MAX_PANELS)
        written.append(out / f"curves_{slug(group)}.png")
        draw_curves(runs, keys[:MAX_PANELS], group, written[-1], x=x, smooth=smooth)
    if flat:
        log.info("plot: %d metrics constant in every run, not drawn: %s", len(flat), ", ".join(flat))
    histories = [load_bin_history(d) for d, r in zip(dirs, loaded) if r.columns]
    if any(migration_counts(h).any() for h in histories):
        written.append(out / "migration.png")
        draw_migration(runs, histories, written[-1])
    written.insert(0, out / "summary.png")
    draw_summary(runs, histories, written[0])
    return written


def _parser() -> argparse.ArgumentParser:
    from rlbal.errors import ArgumentParser

    p = ArgumentParser(
        prog="rlbal plot",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Diagnostic plots of one or more runs, from RUN/metrics.jsonl (a run still being written\n"
        "is fine):\n"
        "  step x bin heatmaps of every per-bin metric (prompt share, adversarial weight, reward and\n"
        "  rollout allocation per bin), curves of everything else (reward, held-out pass@k / mean@k,\n"
        "  mean bin, weight entropy, dual price, losses, timings), several runs overlaid.",
        epilog="examples:\n"
        "  rlbal plot runs/grpo                                    # into runs/grpo/plots/\n"
        "  rlbal plot runs/grpo runs/prompt_gdro --out plots/cmp   # compare runs\n"
        "  rlbal plot runs/grpo --smooth 0.6 --x wall              # smoothed, against wall-clock time",
    )
    p.add_argument("run_dirs", nargs="+", type=Path, help="run directories (each with metrics.jsonl)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: FIRST_RUN/plots)")
    p.add_argument("--x", choices=("step", "wall"), default="step", help="x axis of curves (default: step)")
    p.add_argument(
        "--smooth",
        type=float,
        default=0.0,
        help="EMA weight in [0, 1) for curves, raw values drawn faint behind (default: 0 = off)",
    )
    return p


def plot_main(argv: Sequence[str] | None = None) -> int:
    """`rlbal plot RUN_DIR [RUN_DIR ...] [--out DIR]`; returns the exit status."""
    args = _parser().parse_args(argv)
    missing = [str(d) for d in args.run_dirs if not d.is_dir()]
    if missing:
        print(f"rlbal plot: not a directory: {', '.join(missing)}", file=sys.stderr)
        return 2
    if not 0.0 <= args.smooth < 1.0:
        print(f"rlbal plot: --smooth must be in [0, 1), got {args.smooth}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    written = plot_run(args.run_dirs, args.out, x=args.x, smooth=args.smooth)
    if not written:
        print("rlbal plot: no metrics to plot", file=sys.stderr)
        return 1
    print(f"wrote {len(written)} figures to {written[0].parent}")
    for path in written:
        print(f"  {path.name}")
    return 0
