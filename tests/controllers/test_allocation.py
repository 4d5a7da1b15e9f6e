"""Pure allocation pieces: the exact DP against brute force, the square-root rule, apportioning, arm values
from outcome statistics (against integrals and Monte Carlo), and the price that meets the budget."""

import itertools

import numpy as np
import pytest

from rlbal.controllers.allocation import (
    apportion,
    beta_moment,
    dp_keys,
    joint_allocation,
    knapsack_values,
    outcome_moments,
    soft_targets,
    solve_price,
    sqrt_allocation,
    variance_values,
)


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


def test_dp_breaks_exact_probability_ties_by_the_documented_rule():
    # (2,5), (3,4) and (5,2) all have probability 1/64; (3,4) is the closest to uniform (9+16 < 4+25).
    # Rounding each -log p on its own grid used to split this tie and return (2, 5).
    logp = np.log([[0.125, 0.03125, 0.125, 0.03125], [0.5, 0.0625, 0.5, 0.125]])
    assert joint_allocation([1, 1], logp, 2, 7)[0].tolist() == [3, 4]


def test_dp_is_the_most_probable_allocation_in_float_without_ties():
    rng = np.random.default_rng(11)
    counts, logp = np.array([3, 1, 2]), np.log(rng.dirichlet(np.ones(6), size=3))
    total = 4 * counts.sum()
    best = max(
        (sum(logp[k, a] for k, a in enumerate(arms)), arms)
        for arms in itertools.product(range(6), repeat=3)
        if counts @ (2 + np.array(arms)) == total
    )
    assert joint_allocation(counts, logp, 2, total)[0].tolist() == [2 + a for a in best[1]]


def test_sqrt_rule_matches_the_closed_form():
    # counts 10, 20, 10 -> q = 1/4, 1/2, 1/4; sqrt(v) = 0.2, 0.3, 0.4; sum q sqrt(v) = 0.3 -> n* = 4 s / 0.3
    x, lam = sqrt_allocation([10, 20, 10], [0.04, 0.09, 0.16], 4.0, 2, 12)
    np.testing.assert_allclose(x, [8 / 3, 4.0, 16 / 3])
    assert lam == pytest.approx(4 / 0.3)


def test_sqrt_rule_with_active_bounds():
    # closed form would give class 0 4 * 0.5 / 0.1325 = 15.1 > 12; with class 1 pinned at n_min = 2 (total 6),
    # class 0 takes the remaining 16 - 6 = 10 -> lambda = 10 / 0.5 = 20
    x, lam = sqrt_allocation([1, 3], [0.25, 1e-4], 4.0, 2, 12)
    np.testing.assert_allclose(x, [10.0, 2.0])
    assert lam == pytest.approx(20.0)
    np.testing.assert_allclose(sqrt_allocation([1, 1], [0.0, 0.25], 4.0, 2, 12)[0], [2.0, 6.0])


def test_sqrt_rule_at_the_edges_of_the_arm_range_never_crashes():
    # n_bar == n_max used to index past the kinks (IndexError); every class then sits at n_max
    x, _ = sqrt_allocation([4], [0.2216], 4.0, 3, 4)
    assert x.tolist() == [4.0]
    rng = np.random.default_rng(0)
    for _ in range(3000):
        K = int(rng.integers(1, 6))
        n_min = int(rng.integers(2, 5))
        n_max = n_min + int(rng.integers(0, 6))
        n_bar = float(rng.choice([n_min, n_max, rng.uniform(n_min, n_max)]))
        counts = rng.integers(1, 9, K)
        x, _ = sqrt_allocation(counts, rng.uniform(0, 0.25, K) * (rng.random(K) < 0.8), n_bar, n_min, n_max)
        assert np.all((x >= n_min - 1e-9) & (x <= n_max + 1e-9))
        assert counts @ x == pytest.approx(n_bar * counts.sum())


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


def test_outcome_moments_are_unbiased_for_p_and_p_squared():
    # k ~ Binomial(n, p): E[k/n] = p and E[k(k-1)/(n(n-1))] = p^2 exactly (sum over the pmf)
    from math import comb

    for n, p in ((2, 0.3), (5, 0.7), (12, 0.05)):
        k = np.arange(n + 1)
        pmf = np.array([comb(n, j) * p**j * (1 - p) ** (n - j) for j in k])
        r1, r2 = outcome_moments(np.full(n + 1, n), k)
        assert pmf @ r1 == pytest.approx(p) and pmf @ r2 == pytest.approx(p * p)


def test_beta_moments_against_numerical_integration():
    # mean 0.3, E[p^2] 0.15 -> spread 0.06 -> Beta(a + b = 0.21 / 0.06 - 1 = 2.5): a = 0.75, b = 1.75
    grid = (np.arange(200000) + 0.5) / 200000
    dens = grid**-0.25 * (1 - grid) ** 0.75
    dens /= dens.sum()
    for a, b in ((1, 1), (1, 2), (5, 2), (1, 9)):
        want = dens @ (grid**a * (1 - grid) ** b)
        assert beta_moment(np.array([0.3]), np.array([0.15]), a, b)[0] == pytest.approx(want, rel=2e-3)
    # no spread: a point mass at the mean
    assert beta_moment(np.array([0.4]), np.array([0.16]), 2, 1)[0] == pytest.approx(0.16 * 0.6)


def test_knapsack_value_by_hand_and_by_monte_carlo():
    # point mass p = 0.5: (1 - 2 * 0.5^n) * 0.5 * 0.25 -> n = 2: 0.0625, n = 3: 0.09375
    v = knapsack_values(np.array([0.5]), np.array([0.25]), np.array([2, 3]))
    np.testing.assert_allclose(v, [[0.0625, 0.09375]])
    rng = np.random.default_rng(0)
    p = rng.beta(0.75, 1.75, 400000)  # the Beta of the test above
    for n in (2, 8):
        mc = np.mean((1 - p**n - (1 - p) ** n) * p * (1 - p) ** 2)
        assert knapsack_values(np.array([0.3]), np.array([0.15]), np.array([n]))[0, 0] == pytest.approx(mc, rel=0.01)


def test_variance_values_units():
    v = variance_values(np.array([0.2, 0.05]), np.array([2, 4, 8]), n_bar=4.0, v_ref=0.2)
    np.testing.assert_allclose(v, [[-8.0, -4.0, -2.0], [-2.0, -1.0, -0.5]])  # -(v / v_ref) 16 / n


def test_price_meets_the_budget_and_targets_follow_the_values():
    arms = np.arange(2, 13)
    values = variance_values(np.array([0.25, 0.1, 0.01]), arms, 4.0, v_ref=0.1)
    counts = np.array([10, 20, 30])
    for eta, gamma in ((4.0, 0.01), (0.65, 0.0), (50.0, 0.0)):
        mu, x = solve_price(values, counts, arms, eta, gamma, 4.0)
        assert counts @ x == pytest.approx(240.0)
        assert x[0] > x[1] > x[2]  # more variance, more rollouts
        np.testing.assert_allclose(soft_targets(values, arms, eta, gamma, mu)[0], x)
    # large eta approaches the square-root rule's targets
    _, x_sharp = solve_price(values, counts, arms, 200.0, 0.0, 4.0)
    np.testing.assert_allclose(x_sharp, sqrt_allocation(counts, [0.25, 0.1, 0.01], 4.0, 2, 12)[0], atol=0.3)
    # equal values: every class at n_bar, whatever the price
    mu, x = solve_price(np.zeros((3, arms.size)), counts, arms, 4.0, 0.01, 4.0)
    np.testing.assert_allclose(x, 4.0)
    # n_bar at the arm range's end is out of reach with mixing: the bracket end comes back (no hang)
    mu, x = solve_price(values, counts, arms, 4.0, 0.01, 12.0)
    assert np.all(x > 11.8)
