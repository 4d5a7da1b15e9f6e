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

from collections.abc import Callable, Sequence

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
    return _runs(start)


def plan_units(
    prefix_U: Sequence[int],
    suffix_U: Sequence[int],
    rows_U: Sequence[int],
    max_tokens: int,
    overhead_tokens: float | None,
) -> list[tuple[int, int]]:
    """`plan` for units that share a prompt forward (rlbal.learner.shared_prompt): unit u is rows_U[u] rows with
    one prefix of prefix_U[u] tokens and suffixes of at most suffix_U[u] tokens. A run of units costs two calls
    (prefixes, then suffixes): 2 x overhead + units x longest prefix + rows x longest suffix, and must fit
    max_tokens unless it is one unit. Units in the caller's order (longest suffix first works well: completions
    vary more than prompts); the best contiguous runs, exactly. overhead_tokens None: the fewest calls.

    >>> plan_units([50, 50, 48], [30, 8, 6], [4, 4, 4], max_tokens=4096, overhead_tokens=10)
    [(0, 1), (1, 3)]
    """
    if max_tokens < 1:
        raise ValueError(f"micro-batches: max_tokens must be >= 1, got {max_tokens}")
    pre, suf = np.asarray(prefix_U, dtype=np.float64), np.asarray(suffix_U, dtype=np.float64)
    cum_rows = np.concatenate([[0], np.cumsum(np.asarray(rows_U, dtype=np.float64))])
    n = len(pre)
    if overhead_tokens is None:
        overhead_tokens = float(n * (pre.max(initial=0) + cum_rows[-1] * suf.max(initial=0)) + 1)
    best = np.full(n + 1, np.inf)
    best[0] = 0.0
    start = np.zeros(n + 1, dtype=np.int64)
    for stop in range(1, n + 1):
        lo = max(0, stop - max_tokens)  # every unit adds a row of >= 1 suffix token
        units = stop - np.arange(lo, stop)
        tokens = units * np.maximum.accumulate(pre[lo:stop][::-1])[::-1]
        tokens += (cum_rows[stop] - cum_rows[lo:stop]) * np.maximum.accumulate(suf[lo:stop][::-1])[::-1]
        cost = best[lo:stop] + 2 * overhead_tokens + tokens
        cost[(tokens > max_tokens) & (units > 1)] = np.inf
        k = len(cost) - 1 - int(np.argmin(cost[::-1]))  # ties: the latest start
        best[stop], start[stop] = cost[k], lo + k
    return _runs(start)


def _runs(start: np.ndarray) -> list[tuple[int, int]]:
    """The runs of a DP table whose start[stop] is where the best run ending at stop begins (start[0] unused)."""
    runs, stop = [], len(start) - 1
    while stop > 0:
        runs.append((int(start[stop]), stop))
        stop = int(start[stop])
    return runs[::-1]


def row_cost(lengths_desc: Sequence[int]) -> Callable[[int, int], float]:
    """Padded tokens of a run of rows sorted longest first (for `split_to`)."""
    lens = list(lengths_desc)
    return lambda a, b: (b - a) * lens[a] if b > a else 0


def unit_cost(prefix_U: Sequence[int], suffix_U: Sequence[int], rows_U: Sequence[int]) -> Callable[[int, int], float]:
    """Tokens of a run of units under the shared prompt forward (for `split_to`)."""
    pre, suf, rows = list(prefix_U), list(suffix_U), list(rows_U)
    return lambda a, b: (b - a) * max(pre[a:b]) + sum(rows[a:b]) * max(suf[a:b]) if b > a else 0


def split_to(runs: list[tuple[int, int]], count: int, cost: Callable[[int, int], float]) -> list[tuple[int, int]]:
    """`runs` cut into exactly `count` runs (data-parallel ranks must make the same number of calls): each cut
    splits the run where that saves the most `cost(start, stop)`; empty runs (start == stop) fill up when there
    are fewer items than calls. Sorted, contiguous, covering the same items.

    >>> split_to([(0, 4)], 2, row_cost([10, 4, 4, 4]))     # 40 padded -> 10 + 12
    [(0, 1), (1, 4)]
    >>> split_to([(0, 1)], 3, row_cost([7]))
    [(0, 1), (1, 1), (1, 1)]
    """
    runs = sorted(runs)
    if len(runs) > count:
        raise ValueError(f"micro-batches: cannot merge {len(runs)} runs into {count}")
    while len(runs) < count:
        gain, at, cut = -np.inf, -1, -1
        for r, (a, b) in enumerate(runs):
            for c in range(a + 1, b):
                g = cost(a, b) - cost(a, c) - cost(c, b)
                if g > gain:
                    gain, at, cut = g, r, c
        if at < 0:  # every run is a single item
            end = runs[-1][1] if runs else 0
            runs += [(end, end)] * (count - len(runs))
            break
        a, b = runs[at]
        runs[at : at + 1] = [(a, cut), (cut, b)]
    return runs
