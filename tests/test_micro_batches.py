"""rlbal.micro_batches: the plan is the cheapest of *all* ways to group the rows (brute force over every set
partition, not only contiguous runs), respects the budget, and `split_to` gives every rank the same count."""

from __future__ import annotations

import numpy as np
import pytest

from rlbal.micro_batches import plan, plan_units, row_cost, split_to, unit_cost


def set_partitions(items: list[int]):
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for part in set_partitions(rest):
        for k in range(len(part)):
            yield part[:k] + [[first, *part[k]]] + part[k + 1 :]
        yield [[first], *part]


def cost(blocks, lens, budget, overhead):
    """(calls, padded tokens) of a grouping, None if a block of several rows exceeds the budget."""
    padded = 0
    for block in blocks:
        size = len(block) * max(lens[i] for i in block)
        if len(block) > 1 and size > budget:
            return None
        padded += size
    return len(blocks), padded


def total(c, overhead):
    calls, padded = c
    return (calls, padded) if overhead is None else calls * overhead + padded


@pytest.mark.parametrize("seed", range(40))
def test_plan_is_the_cheapest_grouping_of_all(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 8))
    lens = sorted(rng.integers(1, 30, n).tolist(), reverse=True)
    budget = int(rng.integers(1, 90))
    overhead = None if seed % 4 == 0 else float(rng.integers(0, 40))
    runs = plan(lens, budget, overhead)
    assert runs[0][0] == 0 and runs[-1][1] == n and all(a < b for a, b in runs)
    assert all(runs[i][1] == runs[i + 1][0] for i in range(len(runs) - 1))
    mine = cost([list(range(a, b)) for a, b in runs], lens, budget, overhead)
    assert mine is not None  # within the budget
    feasible = [c for p in set_partitions(list(range(n))) if (c := cost(p, lens, budget, overhead)) is not None]
    assert total(mine, overhead) == min(total(c, overhead) for c in feasible)


def test_plan_trades_calls_for_padding_by_the_overhead():
    lens = [92, 80, 76, 75, 75, 74, 70, 60]  # padded as one call: 8 x 92 = 736 (real 602)
    assert plan(lens, 4096, None) == [(0, 8)]
    assert plan(lens, 4096, 1000) == [(0, 8)]
    # at 30 tokens a call, by hand: one call 30 + 736 = 766; [92 80] [76 75 75 74 70 60] = 30 + 184 + 30 + 456 = 700;
    # [92] [80 .. 60] = 30 + 92 + 30 + 560 = 712; [92 80 76] [75 .. 60] = 30 + 276 + 30 + 375 = 711;
    # [92 80] [76 75 75 74] [70 60] = 30 + 184 + 30 + 304 + 30 + 140 = 718
    assert plan(lens, 4096, 30) == [(0, 2), (2, 8)]
    assert plan(lens, 4096, 0) == [(0, 1), (1, 2), (2, 3), (3, 5), (5, 6), (6, 7), (7, 8)]
    assert plan([], 16, 5) == []


def test_plan_rejects_bad_input():
    with pytest.raises(ValueError, match="max_tokens must be >= 1, got 0"):
        plan([3], 0, None)
    with pytest.raises(ValueError, match="sorted longest first"):
        plan([3, 5], 16, None)
    with pytest.raises(ValueError, match="overhead_tokens must be >= 0, got -1"):
        plan([3], 16, -1)


def test_split_to_reaches_the_count_where_it_saves_most():
    lens = [40, 10, 10, 10, 9, 2]
    assert split_to([(0, 6)], 2, row_cost(lens)) == [(0, 1), (1, 6)]  # 6 x 40 -> 40 + 5 x 10
    assert split_to([(0, 6)], 3, row_cost(lens)) == [(0, 1), (1, 5), (5, 6)]  # then 5 x 10 -> 4 x 10 + 2
    assert split_to([(0, 2)], 4, row_cost([4, 4])) == [(0, 1), (1, 2), (2, 2), (2, 2)]  # empty runs fill up
    assert split_to([], 2, row_cost([])) == [(0, 0), (0, 0)]
    with pytest.raises(ValueError, match="cannot merge 2 runs into 1"):
        split_to([(0, 1), (1, 2)], 1, row_cost([4, 4]))
    # units: (prefix, longest suffix, rows); one run costs 3 x 50 + 12 x 30 = 510; cut after unit 0: 50 + 120 +
    # 2 x 50 + 8 x 8 = 334; after unit 1: 2 x 50 + 8 x 30 + 48 + 4 x 6 = 412
    cost = unit_cost([50, 50, 48], [30, 8, 6], [4, 4, 4])
    assert cost(0, 3) == 510
    assert split_to([(0, 3)], 2, cost) == [(0, 1), (1, 3)]


@pytest.mark.parametrize("seed", range(30))
def test_plan_units_is_the_best_contiguous_cut(seed):
    """Against every contiguous cut of the units (2^(n-1) of them)."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 8))
    pre, suf, rows = (rng.integers(1, 20, n).tolist() for _ in range(3))
    budget, overhead = int(rng.integers(20, 400)), float(rng.integers(0, 50))
    cost = unit_cost(pre, suf, rows)

    def total(runs):
        if any(b - a > 1 and cost(a, b) > budget for a, b in runs):
            return np.inf
        return sum(2 * overhead + cost(a, b) for a, b in runs)

    runs = plan_units(pre, suf, rows, budget, overhead)
    assert runs[0][0] == 0 and runs[-1][1] == n and total(runs) < np.inf
    best = np.inf
    for mask in range(2 ** (n - 1)):
        cuts = [0] + [i + 1 for i in range(n - 1) if mask >> i & 1] + [n]
        best = min(best, total(list(zip(cuts[:-1], cuts[1:]))))
    assert total(runs) == best
