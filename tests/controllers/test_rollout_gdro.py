"""Rollout-GDRO the controller: outcome statistics by hand, every allocator's budget and bounds, uniform without
information, allocations that follow the statistics, the knapsack anchor against brute force, metrics, state."""

import itertools
import json

import numpy as np
import pytest

from rlbal.controllers.allocation import knapsack_values
from rlbal.controllers.records import PromptResult
from rlbal.controllers.rollout_gdro import RolloutGDRO, RolloutGDROConfig


def result(bins, counts, correct=None, trained=None):
    n = len(bins)
    return PromptResult(
        ids=np.arange(n),
        bins=bins,
        n_rollouts=counts,
        n_correct=correct or [0] * n,
        reward_mean=[0.0] * n,
        loss_signal=[0.0] * n,
        trained=trained,
    )


def test_outcome_statistics_by_hand():
    r = RolloutGDRO(RolloutGDROConfig(stats_ema_beta=0.12), num_classes=2)
    # class 0: k/n = 1/4, 2/4 -> m1 = 3/8; k(k-1)/(n(n-1)) = 0, 2/12 -> m2 = 1/12; v = 3/8 - 1/12 = 7/24
    # (= mean of k(n-k)/(n(n-1)): 3/12 and 4/12). Class 1 keeps the prior: m1 = 0.5, v = 0.25.
    r.observe(result([0, 0], [4, 4], correct=[1, 2]))
    np.testing.assert_allclose(r.m1, [3 / 8, 0.5])
    np.testing.assert_allclose(r.var, [7 / 24, 0.25])
    # a dropped (untrained) group counts the same: the statistics see every generated group
    r.observe(result([0], [4], correct=[0], trained=[False]))
    np.testing.assert_allclose(r.m1, [0.88 * 3 / 8, 0.5])
    np.testing.assert_allclose(r.var, [0.88 * 3 / 8 - 0.88 / 12, 0.25])


@pytest.mark.parametrize("allocator", ["bandit", "sqrt", "knapsack"])
def test_no_information_gives_n_bar_to_everyone(allocator):
    r = RolloutGDRO(RolloutGDROConfig(allocator=allocator), num_classes=10)
    bins = np.random.default_rng(0).integers(0, 10, 512)
    assert r.allocate(bins).tolist() == [4] * 512  # equal priors everywhere
    # equal observed statistics in every class: still n_bar for every prompt
    r.observe(result(bins.tolist(), [4] * 512, correct=[2] * 512))
    assert r.allocate(bins).tolist() == [4] * 512
    assert r.metrics()["controller/rollout_gdro/alloc/std"] == 0.0


@pytest.mark.parametrize("allocator", ["bandit", "sqrt", "knapsack"])
def test_every_allocation_spends_the_exact_budget_within_bounds(allocator):
    rng = np.random.default_rng(4)
    for _ in range(30):
        n_min = int(rng.integers(2, 4))
        n_max = n_min + int(rng.integers(0, 12))
        cfg = RolloutGDROConfig(
            allocator=allocator,
            n_min=n_min,
            n_max=n_max,
            n_bar=float(rng.choice([n_min, n_max, rng.uniform(n_min, n_max)])),
        )
        r = RolloutGDRO(cfg, num_classes=6)
        r.m1 = rng.uniform(0, 1, 6)
        r.m2 = r.m1**2 + rng.uniform(0, 1, 6) * r.m1 * (1 - r.m1)
        bins = rng.integers(0, 6, int(rng.integers(1, 200)))
        n = r.allocate(bins)
        assert n.min() >= n_min and n.max() <= n_max and n.sum() == r.budget(bins.size)


@pytest.mark.parametrize("allocator", ["bandit", "sqrt"])
def test_counts_follow_the_within_prompt_variance(allocator):
    r = RolloutGDRO(RolloutGDROConfig(allocator=allocator, n_bar=8, n_max=16), num_classes=3)
    bins = np.repeat([0, 1, 2], 20)
    # p = 0 (never solved), p = 0.5 (most variance), p = 0.9
    r.observe(result(bins.tolist(), [8] * 60, correct=[0] * 20 + [4] * 20 + [7] * 20))
    n = r.allocate(bins)
    n_C = np.bincount(bins, n) / 20
    # v = 0 -> n_min (the bandit's soft target keeps a little mass on 3); 4 of 8 correct -> v = 4/7 vs 7/56
    assert n.sum() == 480 and n_C[1] > n_C[2] > n_C[0] and n_C[0] == (2.0 if allocator == "sqrt" else 2.1)
    m = r.metrics()
    assert m["controller/rollout_gdro/n/bin_1"] == n_C[1] and m["controller/rollout_gdro/pass_rate/bin_2"] == 0.875


def test_knapsack_allocation_is_the_most_valuable_per_class_allocation():
    cfg = RolloutGDROConfig(allocator="knapsack", n_bar=4, n_min=2, n_max=7)
    r = RolloutGDRO(cfg, num_classes=3)
    r.m1, r.m2 = np.array([0.05, 0.4, 0.9]), np.array([0.01, 0.2, 0.82])
    bins = np.repeat([0, 1, 2], [3, 2, 4])
    n = r.allocate(bins)
    value = knapsack_values(r.m1, r.m2, cfg.arms)
    best = max(
        (sum(c * value[k, a] for k, (c, a) in enumerate(zip([3, 2, 4], arms))), arms)
        for arms in itertools.product(range(6), repeat=3)
        if [3, 2, 4] @ (2 + np.array(arms)) == 36
    )
    assert [int(n[bins == k][0]) for k in range(3)] == [2 + a for a in best[1]] and n.sum() == 36


def test_allocation_moves_gradually_when_the_statistics_move():
    r = RolloutGDRO(RolloutGDROConfig(n_bar=8, n_max=16), num_classes=2)
    bins = np.repeat([0, 1], 32)
    means = []
    for k1 in [4] * 5 + [1] * 25:  # class 1 goes from p = 0.5 to p = 0.125 (less variance) at step 5
        n = r.allocate(bins)
        means.append(n[bins == 1].mean())
        r.observe(result(bins.tolist(), n.tolist(), correct=[4] * 32 + [int(round(k1 * nn / 8)) for nn in n[32:]]))
    steps = np.abs(np.diff(means))
    assert means[4] == 8.0 and means[-1] < 7.0  # equal first, then budget moves to class 0
    assert steps.max() < 1.0  # no jumps: the statistics' EMA moves the soft targets a little each step
    assert r.metrics()["controller/rollout_gdro/alloc/delta"] == pytest.approx(steps[-1] / 2)  # prompt-weighted


def test_observe_rejects_bins_out_of_range():
    with pytest.raises(ValueError, match=r"bins must lie in \[0, 2\)"):
        RolloutGDRO(num_classes=2).observe(result([2], [4]))


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="RolloutGDROConfig.n_min must be >= 2, got 1"):
        RolloutGDROConfig(n_min=1)
    with pytest.raises(ValueError, match=r"RolloutGDROConfig.n_bar must be in \[n_min, n_max\], got 13"):
        RolloutGDROConfig(n_bar=13)
    with pytest.raises(ValueError, match="RolloutGDROConfig.allocator must be one of"):
        RolloutGDROConfig(allocator="greedy")
    with pytest.raises(ValueError, match=r"RolloutGDROConfig.var_prior must be in \[0, 0.25\]"):
        RolloutGDROConfig(var_prior=0.3)


@pytest.mark.parametrize("allocator", ["bandit", "sqrt", "knapsack"])
def test_state_dict_round_trip_and_config_check(allocator):
    r = RolloutGDRO(RolloutGDROConfig(allocator=allocator), num_classes=3)
    rng = np.random.default_rng(0)
    for _ in range(5):
        bins = rng.integers(0, 3, 20)
        n = r.allocate(bins)
        r.observe(result(bins.tolist(), n.tolist(), correct=rng.binomial(n, [0.1, 0.5, 0.8][0]).tolist()))
    back = RolloutGDRO(RolloutGDROConfig(allocator=allocator), num_classes=3)
    back.load_state_dict(json.loads(json.dumps(r.state_dict())))
    assert back.metrics() == r.metrics()
    bins = rng.integers(0, 3, 30)
    assert back.allocate(bins).tolist() == r.allocate(bins).tolist() and back.mu == r.mu
    with pytest.raises(ValueError, match="config.n_max: saved=12, current=10"):
        RolloutGDRO(RolloutGDROConfig(allocator=allocator, n_max=10), num_classes=3).load_state_dict(r.state_dict())
