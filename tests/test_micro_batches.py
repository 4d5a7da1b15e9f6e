"""rlbal.micro_batches: the plan is the cheapest of *all* ways to group the rows (brute force over every set
partition, not only contiguous runs), respects the budget, and `split_to` gives every rank the same count."""

from __future__ import annotations

import numpy as np
import pytest

from rlbal.micro_batches import plan, split_to


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
    assert split_to([(0, 6)], lens, 2) == [(0, 1), (1, 6)]  # 6 x 40 -> 40 + 5 x 10
    assert split_to([(0, 6)], lens, 3) == [(0, 1), (1, 5), (5, 6)]  # then 5 x 10 -> 4 x 10 + 2
    assert split_to([(0, 2)], [4, 4], 4) == [(0, 1), (1, 2), (2, 2), (2, 2)]  # more calls than rows: empty runs
    assert split_to([], [], 2) == [(0, 0), (0, 0)]
    with pytest.raises(ValueError, match="cannot merge 2 runs into 1"):
        split_to([(0, 1), (1, 2)], [4, 4], 1)
