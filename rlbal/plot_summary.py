"""The one-page `summary.png` and the bin-to-bin migration matrix `migration.png` of one or more runs.

summary.png, first row: train reward, held-out mean@k overall and per level, seconds per step (and its main
stages for a single run). Then one row per run (at most MAX_RUNS): the prompt share per difficulty bin, the
rollouts per prompt per bin (Rollout-GDRO), and the migration matrix. Empty bins are blank (rlbal.plot_data).

Migration. RUN/completions.jsonl holds every step's trained prompt ids and their bins at decide time
(rlbal.logging). For every prompt, each pair of consecutive appearances, in bin a and then in bin b, adds
one to M[a, b]: the diagonal counts prompts that stayed in their bin, cells right of it prompts that became
easier (bin 0 = hardest). The figure draws each row as shares (where prompts of bin a went next) and
writes the counts in the cells.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rlbal.logging import read_metrics
from rlbal.plot_data import BIN_COUNT, RunLog, bin_families, bin_matrix, heatmap_matrix
from rlbal.plot_draw import grid_figure, heatmap_on, integer_ticks

MAX_RUNS = 4  # rows of per-run panels in summary.png
ROLLOUTS = "controller/rollout_gdro/n"  # rollouts per prompt, per bin
History = list[tuple[int, np.ndarray, np.ndarray]]  # (step, prompt ids (P,), bins (P,)) in step order


def load_bin_history(run_dir: Path) -> History:
    """Per step: the trained prompts' ids and bins, from RUN/completions.jsonl (a step logged twice keeps its
    last line; malformed lines are skipped)."""
    by_step: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for row in read_metrics(Path(run_dir), "completions.jsonl"):
        ids, bins = row.get("prompt_id"), row.get("bin")
        if (
            isinstance(row.get("step"), int)
            and isinstance(ids, list)
            and isinstance(bins, list)
            and len(ids) == len(bins)
        ):
            by_step[row["step"]] = (np.asarray(ids, dtype=np.int64), np.asarray(bins, dtype=np.int64))
    return [(step, *by_step[step]) for step in sorted(by_step)]


def migration_counts(history: History, num_bins: int = 0) -> np.ndarray:
    """(B, B) int64: M[a, b] = times a prompt seen in bin a was next seen in bin b. B = max(num_bins, bins seen).

    >>> h = [(1, np.array([7, 8]), np.array([0, 1])), (2, np.array([7]), np.array([1])),
    ...      (3, np.array([8, 7]), np.array([1, 1]))]
    >>> migration_counts(h, num_bins=3)
    array([[0, 1, 0],
           [0, 2, 0],
           [0, 0, 0]])
    """
    seen = max((int(b.max()) + 1 for _, _, b in history if b.size), default=0)
    m_BB = np.zeros((max(num_bins, seen), max(num_bins, seen)), dtype=np.int64)
    last: dict[int, int] = {}
    for _, ids, bins in history:
        for i, b in zip(ids.tolist(), bins.tolist()):
            if i in last:
                m_BB[last[i], b] += 1
            last[i] = b
    return m_BB


def _num_bins(run: RunLog) -> int:
    return len(bin_matrix(run, BIN_COUNT).bins_B) if BIN_COUNT in bin_families(run) else 0


def _note(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, fontsize="small", transform=ax.transAxes)
    ax.set_axis_off()


def migration_on(ax, m_BB: np.ndarray):
    """Row shares of a migration matrix on one axis, counts written in the cells (up to 12 bins)."""
    rows = m_BB.sum(axis=1, keepdims=True)
    share_BB = np.where(rows > 0, m_BB / np.maximum(rows, 1), np.nan)
    edges = np.arange(len(m_BB) + 1) - 0.5
    mesh = ax.pcolormesh(edges, edges, np.ma.masked_invalid(share_BB), vmin=0.0, vmax=1.0, cmap="viridis")
    if len(m_BB) <= 12:
        for a in range(len(m_BB)):
            for b in range(len(m_BB)):
                if m_BB[a, b]:
                    ax.text(
                        b,
                        a,
                        str(m_BB[a, b]),
                        ha="center",
                        va="center",
                        fontsize="x-small",
                        color="white" if share_BB[a, b] < 0.6 else "black",
                    )
    ax.set(xlabel="bin at the next appearance", ylabel="bin (0 = hardest)")
    integer_ticks(ax.xaxis, ax.yaxis)
    return mesh


def draw_migration(runs: Sequence[RunLog], histories: Sequence[History], path: Path) -> None:
    """One migration matrix per run that logged bins (figure `migration.png`)."""
    pairs = [(run, m_BB) for run, h in zip(runs, histories) if (m_BB := migration_counts(h, _num_bins(run))).any()]
    fig, axes = grid_figure(
        "bin migration: a prompt's bin -> its bin the next time it is drawn (row shares, counts)",
        len(pairs),
        min(3, len(pairs)),
        3.6,
        3.2,
        right_in=1.0,
    )
    for ax, (run, m_BB) in zip(axes, pairs):
        mesh = migration_on(ax, m_BB)
        ax.set_title(run.name, fontsize="small")
    fig.colorbar(mesh, ax=list(axes), label="share of the row", fraction=0.05, pad=0.02)
    fig.savefig(path, dpi=110)


def _curves(
    ax, runs: Sequence[RunLog], keys: Sequence[str], title: str, unit: str = "", names: Sequence[str] = ()
) -> None:
    """Lines of `keys` (one colour per run, one style per key; legend `names`, default the key after its first
    part); a note when none is logged."""
    styles = ["-", "--", ":", "-."]
    drawn = 0
    for i, run in enumerate(runs):
        for j, key in enumerate(keys):
            if key in run.columns:
                x_P, y_P = run.series(key)
                name = names[j] if names else key.split("/", 1)[1]
                label = " ".join(filter(None, (run.name if len(runs) > 1 else "", name if len(keys) > 1 else "")))
                ax.plot(
                    x_P,
                    y_P,
                    color=f"C{i % 10}" if len(runs) > 1 else f"C{j % 10}",
                    linestyle=styles[j % 4] if len(runs) > 1 else "-",
                    label=label,
                    marker="." if len(x_P) < 30 else None,
                )
                drawn += 1
    if not drawn:
        _note(ax, f"{title}: not logged")
        return
    ax.set(title=title, xlabel="step", ylabel=unit)
    ax.grid(alpha=0.3)
    integer_ticks(ax.xaxis)
    if drawn > 1:
        ax.legend(fontsize="x-small")


def draw_summary(runs: Sequence[RunLog], histories: Sequence[History], path: Path) -> None:
    """The one-page summary (see the module docstring)."""
    shown = list(runs)[:MAX_RUNS]
    fig, axes = grid_figure(
        f"summary: {', '.join(r.name for r in shown)}", 3 + 3 * len(shown), 3, 3.8, 2.6, right_in=0.6, gap_w=1.2
    )
    _curves(axes[0], runs, ["reward/mean"], "train reward")
    means = sorted({k for r in runs for k in r.columns if re.fullmatch(r"eval/mean@\d+", k)})
    if means:
        k = means[0].split("@")[1]
        levels = sorted({key for r in runs for key in r.columns if re.fullmatch(rf"eval/level_[^/]+/mean@{k}", key)})
        _curves(
            axes[1],
            runs,
            [means[0], *levels],
            f"held-out mean@{k}",
            names=["all", *(key.split("/")[1] for key in levels)],
        )
    else:
        _note(axes[1], "no held-out eval logged (eval section)")
    stages = ["timing/step"] + (["timing/generate", "timing/score", "timing/update"] if len(runs) == 1 else [])
    _curves(axes[2], runs, stages, "seconds per step", unit="s")
    for row, (run, history) in enumerate(zip(shown, list(histories) + [[]] * len(shown))):
        share_ax, n_ax, mig_ax = axes[3 + 3 * row : 6 + 3 * row]
        for ax, family, what in ((share_ax, BIN_COUNT, "prompt share"), (n_ax, ROLLOUTS, "rollouts per prompt")):
            if family in bin_families(run):
                m, _ = heatmap_matrix(run, family)
                fig.colorbar(heatmap_on(ax, m), ax=ax, fraction=0.05, pad=0.02)
                ax.set_title(f"{run.name}: {what} per bin", fontsize="small")
            else:
                _note(
                    ax, f"{run.name}: no {what} per bin logged" + (" (Rollout-GDRO off)" if family == ROLLOUTS else "")
                )
        m_BB = migration_counts(history, _num_bins(run))
        if m_BB.any():
            fig.colorbar(migration_on(mig_ax, m_BB), ax=mig_ax, fraction=0.05, pad=0.02)
            mig_ax.set_title(f"{run.name}: bin migration (row shares)", fontsize="small")
        else:
            _note(
                mig_ax,
                f"{run.name}: bin migration: "
                + ("no prompt was drawn twice yet" if history else "no per-prompt bins logged (completions.jsonl)"),
            )
    fig.savefig(path, dpi=110)
