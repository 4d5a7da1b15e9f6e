"""Which rows share a forward/backward call: micro-batches under a token budget, chosen for least padding.

A micro-batch of rows is padded to its longest row, so it costs about `rows x longest` padded tokens plus a
fixed cost per call (kernel launches, Python, the optimizer-free part of autograd's bookkeeping). With the
rows sorted longest first, the cheapest cover is a set of contiguous runs (exchange argument: a shorter row
never raises the width of a run that already holds a longer one); `plan` finds the cheapest one exactly by
dynamic programming over the sorted rows:

    cost(plan) = calls x overhead_tokens + sum over calls of rows x longest row,
    subject to rows x longest <= max_tokens for every call of more than one row.

`overhead_tokens` is the fixed cost of one call in padded tokens (measured on this project's 2-core CPU box at
one thread: ~80 for the tiny test model, 15-30 for SmolLM2-135M; `LearnerConfig.micro_batch_overhead_tokens`).
None asks for the fewest calls, and among those the least padding.

Numpy only, no torch: the learner, the data-parallel world and the benchmarks share it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def plan(lengths_desc: Sequence[int], max_tokens: int, overhead_tokens: float | None) -> list[tuple[int, int]]:
    """Runs [start, stop) of rows sorted longest first, each one forward/backward call (see the module docstring).

    >>> plan([10, 4, 4, 4], max_tokens=100, overhead_tokens=5)     # 5 + 10 + 5 + 12 < 5 + 40
    [(0, 1), (1, 4)]
    >>> plan([10, 4, 4, 4], max_tokens=100, overhead_tokens=20)    # 20 + 40 < 20 + 10 + 20 + 12
    [(0, 4)]
    >>> plan([10, 4, 4, 4], max_tokens=8, overhead_tokens=None)    # the 10-token row goes alone; 2 x 4 <= 8
    [(0, 1), (1, 3), (3, 4)]
    """
    if max_tokens < 1:
        raise ValueError(f"micro-batches: max_tokens must be >= 1, got {max_tokens}")
    lens = np.asarray(lengths_desc, dtype=np.int64)
    n = len(lens)
    if n and np.any(np.diff(lens) > 0):
        raise ValueError("micro-batches: lengths must be sorted longest first")
    if overhead_tokens is not None and overhead_tokens < 0:
        raise ValueError(f"micro-batches: overhead_tokens must be >= 0, got {overhead_tokens}")
    # None: a call costs more than all padding together, so the fewest calls win and padding breaks ties
    overhead = float(n * int(lens.max(initial=0)) + 1) if overhead_tokens is None else float(overhead_tokens)
    width = lens.astype(np.float64)
    best = np.full(n + 1, np.inf)
    best[0] = 0.0
    start = np.zeros(n + 1, dtype=np.int64)
    calls = np.zeros(n + 1, dtype=np.int64)
    for stop in range(1, n + 1):
        # a run ending here holds at most max_tokens // (its shortest row) rows, unless it is one row
        lo = max(0, stop - max(1, max_tokens // max(int(lens[stop - 1]), 1)))
        rows = stop - np.arange(lo, stop)
        padded = rows * width[lo:stop]
        cost = best[lo:stop] + overhead + padded
        cost[(padded > max_tokens) & (rows > 1)] = np.inf
        # ties: the fewest calls, then the latest start (earlier runs fill up, as a greedy fill would)
        tied = np.flatnonzero(cost == cost.min())
        tied = tied[calls[lo + tied] == calls[lo + tied].min()]
        k = int(tied[-1])
        best[stop], start[stop], calls[stop] = cost[k], lo + k, calls[lo + k] + 1
    runs, stop = [], n
    while stop > 0:
        runs.append((int(start[stop]), stop))
        stop = int(start[stop])
    return runs[::-1]


def split_to(runs: list[tuple[int, int]], lengths_desc: Sequence[int], count: int) -> list[tuple[int, int]]:
    """`runs` cut into exactly `count` runs (data-parallel ranks must make the same number of calls): each cut
    splits the run whose best split point saves the most padded tokens; empty runs (start == stop) fill up
    when there are fewer rows than calls. Sorted, contiguous, covering the same rows.

    >>> split_to([(0, 4)], [10, 4, 4, 4], 2)     # 40 padded -> 10 + 12
    [(0, 1), (1, 4)]
    >>> split_to([(0, 1)], [7], 3)
    [(0, 1), (1, 1), (1, 1)]
    """
    lens = list(lengths_desc)
    runs = sorted(runs)
    if len(runs) > count:
        raise ValueError(f"micro-batches: cannot merge {len(runs)} runs into {count}")
    while len(runs) < count:
        gain, at, cut = -1, -1, -1
        for r, (a, b) in enumerate(runs):
            for c in range(a + 1, b):  # [a, c) keeps width lens[a]; [c, b) narrows to lens[c]
                g = (b - c) * (lens[a] - lens[c])
                if g > gain:
                    gain, at, cut = g, r, c
        if at < 0:  # every run is a single row
            end = runs[-1][1] if runs else 0
            runs += [(end, end)] * (count - len(runs))
            break
        a, b = runs[at]
        runs[at : at + 1] = [(a, cut), (cut, b)]
    return runs
