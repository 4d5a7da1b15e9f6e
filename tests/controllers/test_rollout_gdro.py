"""Rollout-GDRO: the exact-budget DP against brute force, the square-root rule, arm learning, the dual price."""
import itertools
import json

import numpy as np
import pytest

from rlbal.controllers.records import PromptResult
from rlbal.controllers.rollout_gdro import (RolloutGDRO, RolloutGDROConfig, apportion, arm_logp, dp_keys,
                                            joint_allocation, sqrt_allocation)


def brute_force(counts, logp, n_min, total):
    """Every joint allocation: the largest total <= budget, then the smallest summed key, then (spec 6.3)
    the smallest count for the last class, then the one before, ... Keys are the DP's exact integer costs."""
    keys = dp_keys(np.asarray(counts), logp, n_min)
    best = None
    for arms in itertools.product(range(logp.shape[1]), repeat=len(counts)):
        spent = sum(c * (n_min + a) for c, a in zip(counts, arms))
        if spent <= total:
            cand = (-spent, sum(int(keys[k, a]) for k, a in enumerate(arms)), tuple(reversed(arms)))
            best = cand if best is None or cand < best else best
    return [n_min + a for a in reversed(best[2])], -best[0]


def result(bins, counts, signal=None, correct=None):
    n = len(bins)
    return PromptResult(ids=np.arange(n), bins=bins, n_rollouts=counts, n_correct=correct or [0] * n,
                        reward_mean=[0.0] * n, loss_signal=signal or [0.0] * n)


@pytest.mark.parametrize("seed", range(8))
def test_dp_matches_brute_force_with_random_ties_and_infeasible_budgets(seed):
    rng = np.random.default_rng(seed)
    for case in range(25):
        K, A = int(rng.integers(1, 5)), int(rng.integers(2, 6))
        counts = rng.integers(1, 6, size=K)
        n_bar = rng.uniform(2, 2 + A - 1)  # fractional: often no per-class allocation hits the total
        total = int(np.floor(counts.sum() * n_bar))
        logp = np.log(rng.dirichlet(np.ones(A), size=K))
        if case % 3 == 0:
            p = np.round(np.exp(logp), 1) + 0.05  # repeated probabilities within a row: exact ties
            logp = np.log(p / p.sum(1, keepdims=True))
        if case % 5 == 0:
            logp = np.full((K, A), -np.log(A))  # all equal: the tie-break decides everything
        n_K, reached = joint_allocation(counts, logp, 2, total)
        expected, expected_total = brute_force(counts, logp, 2, total)
        assert n_K.tolist() == expected and reached == expected_total == int(counts @ n_K)


def test_dp_is_the_most_probable_allocation_in_float_without_ties():
    rng = np.random.default_rng(11)
    counts, logp = np.array([3, 1, 2]), np.log(rng.dirichlet(np.ones(6), size=3))
    total = 4 * counts.sum()
    best = max((sum(logp[k, a] for k, a in enumerate(arms)), arms)
               for arms in itertools.product(range(6), repeat=3) if counts @ (2 + np.array(arms)) == total)
    assert joint_allocation(counts, logp, 2, total)[0].tolist() == [2 + a for a in best[1]]


def test_equal_probabilities_give_the_uniform_allocation():
    r = RolloutGDRO(RolloutGDROConfig(), num_classes=10)
    bins = np.random.default_rng(0).integers(0, 10, 512)
    assert r.allocate(bins).tolist() == [4] * 512


def test_infeasible_budget_below_or_filled():
    # two classes of two prompts, n_bar 4.25 -> budget 17, but 2a + 2b is even: largest total below is 16
    below = RolloutGDRO(RolloutGDROConfig(n_bar=4.25), num_classes=2)
    assert below.allocate([0, 0, 1, 1]).tolist() == [4, 4, 4, 4]
    assert below.metrics()["controller/rollout_gdro/budget/shortfall"] == 1.0
    fill = RolloutGDRO(RolloutGDROConfig(n_bar=4.25, on_infeasible="fill"), num_classes=2)
    assert fill.allocate([0, 0, 1, 1]).tolist() == [5, 4, 4, 4]  # equal gains: batch order decides


def test_every_allocation_respects_bounds_and_budget():
    rng = np.random.default_rng(4)
    for trial in range(40):
        cfg = RolloutGDROConfig(n_bar=float(rng.uniform(2, 12)), on_infeasible=("below", "fill")[trial % 2],
                                allocator=("bandit", "sqrt")[trial % 4 // 2])
        r = RolloutGDRO(cfg, num_classes=6)
        r.scores = rng.normal(0, 3, r.scores.shape)
        r.var = rng.uniform(0, 0.25, 6)
        bins = rng.integers(0, 6, int(rng.integers(1, 200)))
        n = r.allocate(bins)
        assert n.min() >= 2 and n.max() <= 12 and n.sum() <= r.budget(bins.size)
        if cfg.on_infeasible == "fill" or cfg.allocator == "sqrt":
            assert n.sum() == r.budget(bins.size)


def test_sqrt_rule_matches_the_closed_form_within_rounding():
    # counts 10, 20, 10 -> q = 1/4, 1/2, 1/4; sqrt(v) = 0.2, 0.3, 0.4; sum q sqrt(v) = 0.3 -> n* = 4 s / 0.3
    x, lam = sqrt_allocation([10, 20, 10], [0.04, 0.09, 0.16], 4.0, 2, 12)
    np.testing.assert_allclose(x, [8 / 3, 4.0, 16 / 3])
    assert lam == pytest.approx(4 / 0.3)
    r = RolloutGDRO(RolloutGDROConfig(allocator="sqrt"), num_classes=3)
    r.var = np.array([0.04, 0.09, 0.16])
    bins = np.repeat([0, 1, 2], [10, 20, 10])
    n = r.allocate(bins)
    assert n.sum() == 160 and np.all(np.abs(n - x[bins]) < 1)
    # class totals 26.67, 80, 53.33 -> floors 26 + 80 + 53 = 159; the unit left goes to class 0 (residual .67)
    assert np.bincount(bins, n).tolist() == [27, 80, 53] and n[:10].tolist() == [3] * 7 + [2] * 3
    assert r.metrics()["controller/rollout_gdro/dual_mu"] == pytest.approx(1 / lam**2)


def test_sqrt_rule_with_active_bounds():
    # closed form would give class 0 4 * 0.5 / 0.1325 = 15.1 > 12; with class 1 pinned at n_min = 2 (total 6),
    # class 0 takes the remaining 16 - 6 = 10 -> lambda = 10 / 0.5 = 20
    x, lam = sqrt_allocation([1, 3], [0.25, 1e-4], 4.0, 2, 12)
    np.testing.assert_allclose(x, [10.0, 2.0])
    assert lam == pytest.approx(20.0)
    np.testing.assert_allclose(sqrt_allocation([1, 1], [0.0, 0.25], 4.0, 2, 12)[0], [2.0, 6.0])


def test_apportion_keeps_the_exact_total():
    rng = np.random.default_rng(2)
    for _ in range(50):
        bins = rng.integers(0, 5, int(rng.integers(1, 60)))
        counts = np.bincount(bins, minlength=5)
        x, _ = sqrt_allocation(counts[counts > 0], rng.uniform(0, 0.25, (counts > 0).sum()), 4.5, 2, 12)
        x_C = np.zeros(5)
        x_C[counts > 0] = x
        n = apportion(bins, x_C, int(np.floor(bins.size * 4.5)), 2, 12)
        assert n.sum() == int(np.floor(bins.size * 4.5)) and np.all(np.abs(n - x_C[bins]) < 1)


def test_arm_scores_dual_price_and_allocation_follow_a_scripted_signal():
    r = RolloutGDRO(RolloutGDROConfig(), num_classes=2)
    assert r.allocate([0, 1]).tolist() == [4, 4]
    # class 0 played arm 6 and class 1 arm 2, both with mean signal 3 (first reward: init)
    r.observe(result([0, 1], [6, 2], signal=[3.0, 3.0]))
    assert r.scores[0, 4] == 3.0 and r.scores[1, 0] == 3.0 and np.count_nonzero(r.scores) == 2
    # uniform arms before the update: E[n] = 7 -> mu = 0.05 * (7 - 4)
    assert r.mu == pytest.approx(0.15)
    # priced scores S - 0.15 (n - 4): class 0 arm 6 = 2.7 (others <= 0.3), class 1 arm 2 = 3.3: (6, 2) wins
    np.testing.assert_allclose(r.priced_scores()[0, [0, 4]], [0.3, 2.7])
    assert r.allocate([0, 1]).tolist() == [6, 2]
    r.observe(result([0, 1], [6, 2], signal=[1.0, 3.0]))
    assert r.scores[0, 4] == pytest.approx(0.6 * 3 + 0.4 * 1.0)  # EMA, beta 0.4, of the signal itself


@pytest.mark.parametrize("arm_score,expected", [("ema", 0.6 * 3 + 0.4 * 0.7), ("cumsum", 3 + 0.7)])
def test_feedback_pricing_folds_mu_into_the_played_arm(arm_score, expected):
    r = RolloutGDRO(RolloutGDROConfig(price="feedback", arm_score=arm_score), num_classes=2)
    r.observe(result([0, 1], [6, 2], signal=[3.0, 3.0]))  # mu = 0 at this step: reward 3; then mu = 0.15
    r.observe(result([0, 1], [6, 2], signal=[1.0, 3.0]))  # reward 1 - 0.15 * (6 - 4) = 0.7
    assert r.scores[0, 4] == pytest.approx(expected)
    assert np.array_equal(r.priced_scores(), r.scores)  # no repricing at decision time


def test_realised_dual_target_moves_only_on_a_shortfall():
    exact = RolloutGDRO(RolloutGDROConfig(dual_target="realised"), num_classes=2)
    exact.observe(result([0, 1], [6, 2]))
    assert exact.mu == 0.0  # realised mean 4 == n_bar: the paper's Eq. 21 does not move under an exact DP
    short = RolloutGDRO(RolloutGDROConfig(dual_target="realised", n_bar=4.5), num_classes=1)
    n = short.allocate([0, 0, 0])  # budget 13, 3 n <= 13 -> 4 each, 12 spent
    short.observe(result([0, 0, 0], n.tolist()))
    assert n.tolist() == [4, 4, 4] and short.mu == pytest.approx(0.05 * (4 - 4.5))


def test_variance_estimate_by_hand():
    r = RolloutGDRO(RolloutGDROConfig(var_ema_beta=0.12), num_classes=2)
    # k(n-k) / (n(n-1)): 1*3/12 = 0.25 and 2*2/12 = 1/3 -> class 0 first estimate 7/24; class 1 keeps the prior
    r.observe(result([0, 0], [4, 4], correct=[1, 2]))
    np.testing.assert_allclose(r.var, [7 / 24, 0.25])
    r.observe(result([0], [4], correct=[0]))
    np.testing.assert_allclose(r.var, [0.88 * 7 / 24, 0.25])


def test_metrics_of_an_allocation_by_hand():
    r = RolloutGDRO(RolloutGDROConfig(), num_classes=2)
    r.scores[0, 4] = 3.0
    r.scores[1, 0] = 3.0
    r.allocate([0, 1, 1])  # budget 12: class 0 arm 6 + 2 x class 1 arm 2 = 10 < 12; DP finds the best at 12
    m = r.metrics()
    n0, n1 = m["controller/rollout_gdro/n/bin_0"], m["controller/rollout_gdro/n/bin_1"]
    assert n0 + 2 * n1 == 12 and m["controller/rollout_gdro/budget/spent"] == 12.0
    s0 = n0 / 12
    assert m["controller/rollout_gdro/budget_share/bin_0"] == pytest.approx(s0)
    assert m["controller/rollout_gdro/alloc/entropy"] == pytest.approx(-(s0 * np.log(s0) + (1 - s0) * np.log(1 - s0)))
    assert m["controller/rollout_gdro/alloc/mean"] == 4.0


def test_observe_rejects_counts_outside_the_arms():
    with pytest.raises(ValueError, match=r"n_rollouts must lie in \[2, 12\]"):
        RolloutGDRO(num_classes=2).observe(result([0], [13]))


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="RolloutGDROConfig.n_min must be >= 2, got 1"):
        RolloutGDROConfig(n_min=1)
    with pytest.raises(ValueError, match=r"RolloutGDROConfig.n_bar must be in \[n_min, n_max\], got 13"):
        RolloutGDROConfig(n_bar=13)
    with pytest.raises(ValueError, match="RolloutGDROConfig.allocator must be one of"):
        RolloutGDROConfig(allocator="knapsack")


def test_state_dict_round_trip_and_config_check():
    r = RolloutGDRO(RolloutGDROConfig(), num_classes=3)
    rng = np.random.default_rng(0)
    for _ in range(5):
        bins = rng.integers(0, 3, 20)
        n = r.allocate(bins)
        r.observe(result(bins.tolist(), n.tolist(), signal=rng.normal(size=20).tolist(),
                         correct=rng.binomial(n, 0.4).tolist()))
    back = RolloutGDRO(RolloutGDROConfig(), num_classes=3)
    back.load_state_dict(json.loads(json.dumps(r.state_dict())))
    bins = rng.integers(0, 3, 30)
    assert back.allocate(bins).tolist() == r.allocate(bins).tolist() and back.mu == r.mu
    assert back.metrics() == r.metrics()
    with pytest.raises(ValueError, match="config.n_max: saved=12, current=10"):
        RolloutGDRO(RolloutGDROConfig(n_max=10), num_classes=3).load_state_dict(r.state_dict())


def test_arm_logp_mixes_exploration():
    logp = arm_logp(np.array([[0.0, np.log(3.0) / 0.65]]), 0.65, 0.2)  # softmax [1/4, 3/4] -> 0.8 p + 0.1
    np.testing.assert_allclose(np.exp(logp), [[0.3, 0.7]])
