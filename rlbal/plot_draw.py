"""Drawing for `rlbal plot` (rlbal.plot decides what to draw): a titled grid of panels, step x bin heatmaps
(nan cells blank), curves with units. matplotlib's object API on the Agg canvas: no display, no pyplot state.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from rlbal.plot_data import BinMatrix, RunLog, bin_families, ema, heatmap_matrix, unit_of


def grid_figure(
    title: str, n_panels: int, ncols: int, panel_w: float, panel_h: float, right_in: float = 0.25, gap_w: float = 0.65
):
    """A titled grid of panels with fixed margins in inches (constrained layout doubled the drawing time)."""
    from matplotlib.figure import Figure

    nrows = -(-n_panels // ncols)
    left, bottom, top, gap_h = 0.75, 0.5, 0.6, 0.75  # inches: labels, suptitle, titles
    width = left + right_in + ncols * panel_w + (ncols - 1) * gap_w
    height = bottom + top + nrows * panel_h + (nrows - 1) * gap_h
    fig = Figure(figsize=(width, height))
    grid = dict(
        left=left / width,
        right=1 - right_in / width,
        bottom=bottom / height,
        top=1 - top / height,
        wspace=gap_w / panel_w,
        hspace=gap_h / panel_h,
    )
    axes = fig.subplots(nrows, ncols, squeeze=False, gridspec_kw=grid).ravel()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    fig.suptitle(title, y=1 - 0.1 / height, va="top")
    return fig, axes[:n_panels]


def _edges(centres: np.ndarray) -> np.ndarray:
    """Cell edges around sorted centres (uneven step spacing stays honest on the x axis)."""
    c = centres.astype(np.float64)
    if len(c) == 1:
        return np.array([c[0] - 0.5, c[0] + 0.5])
    mid = (c[1:] + c[:-1]) / 2
    return np.concatenate([[c[0] - (mid[0] - c[0])], mid, [c[-1] + (c[-1] - mid[-1])]])


def integer_ticks(*axes) -> None:
    from matplotlib.ticker import MaxNLocator

    for axis in axes:
        axis.set_major_locator(MaxNLocator(integer=True))


def heatmap_on(ax, m: BinMatrix, vmin: float | None = None, vmax: float | None = None):
    """A step x bin matrix on one axis (nan cells blank); returns the mesh for a colour bar."""
    mesh = ax.pcolormesh(
        _edges(m.steps_S),
        _edges(m.bins_B),
        np.ma.masked_invalid(m.values_SB.T),
        vmin=vmin,
        vmax=vmax,
        cmap="viridis",
        shading="flat",
    )
    ax.set(xlabel="step", ylabel="bin (0 = hardest)")
    integer_ticks(ax.xaxis, ax.yaxis)
    return mesh


def draw_heatmap(runs: Sequence[RunLog], family: str, path: Path) -> None:
    """One panel per run that logged the family (step on x, bin on y), one colour scale for all panels."""
    mats = [(run.name, *heatmap_matrix(run, family)) for run in runs if family in bin_families(run)]
    finite = np.concatenate([m.values_SB[np.isfinite(m.values_SB)] for _, m, _ in mats])
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    fig, axes = grid_figure(f"{mats[0][2]} per bin", len(mats), 1, 7.0, 2.0, right_in=1.3)
    for ax, (name, m, _) in zip(axes, mats):
        mesh = heatmap_on(ax, m, vmin, vmax)
        ax.set(title=name if len(mats) > 1 else None)
    width, height = fig.get_size_inches()
    cax = fig.add_axes((1 - 1.1 / width, 0.5 / height, 0.15 / width, 1 - 1.1 / height))
    fig.colorbar(mesh, cax=cax, label=mats[0][2].rsplit("/", 1)[-1])  # the full name is the title
    fig.savefig(path, dpi=110)


def draw_curves(
    runs: Sequence[RunLog],
    keys: Sequence[str],
    title: str,
    path: Path,
    x: Literal["step", "wall"] = "step",
    smooth: float = 0.0,
) -> None:
    """One panel per key, one line per run (raw values faint behind the smoothed line when smoothing)."""
    fig, axes = grid_figure(title, len(keys), min(3, len(keys)), 3.6, 2.4)
    colours = [f"C{i % 10}" for i in range(len(runs))]
    for ax, key in zip(axes, keys):
        for run, colour in zip(runs, colours):
            if key not in run.columns:
                continue
            x_P, y_P = run.series(key, x)
            if smooth > 0:
                ax.plot(x_P, y_P, color=colour, alpha=0.25, linewidth=0.8)
            ax.plot(x_P, ema(y_P, smooth), color=colour, label=run.name, marker="." if len(x_P) < 30 else None)
        ax.set(
            title=key.removeprefix(f"{title}/"), xlabel="wall-clock s" if x == "wall" else "step", ylabel=unit_of(key)
        )
        ax.grid(alpha=0.3)
        if x == "step":
            integer_ticks(ax.xaxis)
    if len(runs) > 1:
        axes[0].legend(fontsize="small")
    fig.savefig(path, dpi=110)
