"""BAPO clip search: hand-derived bounds, a slow reference, monotonicity of the default measure, options, edges."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from rlbal.controllers.bapo import (
    BapoConfig,
    ContributionTables,
    bapo_search,
    contribution_tables,
    pick_bounds,
    search_path,
)

ONES2 = np.ones(2)


# ---------------------------------------------------------------- slow, obviously-correct references


def _ppo_objective(r, a, c_low, c_high):
    """Per-token PPO-clip objective min(r*A, clip(r, c_low, c_high)*A)."""
    return np.minimum(r * a, np.clip(r, c_low, c_high) * a)


def reference_sides(r, a, m, c_low, c_high, measure):
    """(pos, neg) at one candidate, straight from the PPO objective.

    gradient: a token counts iff the objective moves with r (central finite difference), with weight |r*A|.
    value:    each token's |objective| (Eq. 8 read literally).
    """
    keep = m > 0
    r, a = r[keep], a[keep]
    if measure == "gradient":
        h = 1e-7
        moves = _ppo_objective(r + h, a, c_low, c_high) != _ppo_objective(r - h, a, c_low, c_high)
        w = np.abs(r * a) * moves
    else:
        w = np.abs(_ppo_objective(r, a, c_low, c_high))
    return float(w[a > 0].sum()), float(w[a < 0].sum())


def reference_search(r, a, m, cfg):
    """Algorithm 1 as a loop over candidates (integer counters over the config's grids)."""
    hi, lo = cfg.upper_grid(), cfg.lower_grid()
    i = j = steps = 0

    def met(i, j):
        pos, neg = reference_sides(r, a, m, lo[j], hi[i], cfg.measure)
        if cfg.target == "share":
            return pos + neg > 0 and pos / (pos + neg) >= cfg.rho0
        return pos > 0 and (neg == 0 or pos / neg >= cfg.rho0)

    while not met(i, j):
        can_hi, can_lo = i + 1 < len(hi), j + 1 < len(lo)
        if not (can_hi or can_lo):
            break
        first_is_hi = cfg.order == "paper"
        if (can_hi and first_is_hi) or (can_hi and not can_lo):
            i += 1
        else:
            j += 1
        steps += 1
    return lo[j], hi[i], steps, met(i, j)


def random_tokens(seed, n=200):
    rng = np.random.default_rng(seed)
    r = np.exp(rng.normal(0.0, 0.5, n))  # ratios spread over roughly [0.2, 5]
    a = rng.normal(0.0, 1.0, n) + rng.choice([-0.5, 0.5], n)  # both signs, never exactly 0
    m = (rng.random(n) < 0.8).astype(np.float32)
    return r, a, m


# ---------------------------------------------------------------- grids and path


def test_grids_are_start_plus_integer_steps_and_end_exactly_at_max():
    cfg = BapoConfig()
    hi, lo = cfg.upper_grid(), cfg.lower_grid()
    # (3.0 - 1.2) / 0.05 = 36 steps -> 37 candidates; (0.9 - 0.6) / 0.02 = 15 steps (14.999... in floats) -> 16.
    assert len(hi) == 37 and len(lo) == 16
    assert hi[0] == 1.2 and hi[-1] == 3.0 and lo[0] == 0.6 and lo[-1] == 0.9
    assert hi[7] == 1.55 and lo[13] == 0.86  # decimal values, no float-accumulation noise
    # a range that is not a multiple of the step stops short of the max: 1.2, 1.5, 1.8 (never 2.0)
    np.testing.assert_allclose(BapoConfig(high_max=2.0, high_step=0.3).upper_grid(), [1.2, 1.5, 1.8])


def test_search_path_orders():
    # 3 upper and 2 lower candidates: paper walks the upper bound to its end first, code the lower bound.
    i, j = search_path(3, 2, "paper")
    assert list(zip(i, j)) == [(0, 0), (1, 0), (2, 0), (2, 1)]
    i, j = search_path(3, 2, "code")
    assert list(zip(i, j)) == [(0, 0), (0, 1), (1, 1), (2, 1)]
    with pytest.raises(ValueError, match="order must be one of"):
        search_path(3, 2, "random")


# ---------------------------------------------------------------- hand-derived bounds
# (defaults: rho0 0.4, a+ 1.2..3.0 by 0.05, a- 0.6..0.9 by 0.02)


def test_upper_bound_moves_until_the_positive_token_is_admitted():
    # Positive r=1.52 A=+1 carries no gradient while c_high <= 1.52; negative r=1.0 A=-1 always counts 1.0.
    # Share is 0 until c_high = 1.55 (7 steps of 0.05), then 1.52 / (1.52 + 1.0) = 0.6032 >= 0.4.
    b = bapo_search(np.array([1.52, 1.0]), np.array([1.0, -1.0]), ONES2, BapoConfig())
    assert (b.c_low, b.n_steps, b.reached) == (0.6, 7, True)
    assert b.c_high == pytest.approx(1.55)
    assert b.share == pytest.approx(1.52 / 2.52)
    assert b.pos_neg_ratio == pytest.approx(1.52)


HARD_NEGATIVES = (np.array([1.0, 0.75, 0.85, 0.95]), np.array([1.0, -2.0, -2.0, -1.0]))


def test_lower_bound_moves_after_the_upper_bound_is_exhausted():
    # pos = 1.0 (r=1 < every c_high), so the 36 upper steps change nothing. Negatives contribute
    # 0.75*2 = 1.5 while c_low < 0.75, 0.85*2 = 1.7 while c_low < 0.85, 0.95 always (0.95 > b- = 0.9).
    # share: start 1/(1+4.15) = 0.194; c_low=0.76 (j=8): 1/3.65 = 0.274; c_low=0.86 (j=13): 1/1.95 = 0.513 >= 0.4.
    r, a = HARD_NEGATIVES
    b = bapo_search(r, a, np.ones(4), BapoConfig())
    assert (b.c_high, b.n_steps, b.reached) == (3.0, 36 + 13, True)
    assert b.c_low == pytest.approx(0.86)
    assert b.share == pytest.approx(1 / 1.95)


def test_code_order_raises_the_lower_bound_first():
    r, a = HARD_NEGATIVES
    # Same tokens, lower bound first: c_low = 0.86 after 13 steps already gives 0.513; c_high never moves.
    b = bapo_search(r, a, np.ones(4), BapoConfig(order="code"))
    assert (b.c_high, b.n_steps) == (1.2, 13)
    assert b.c_low == pytest.approx(0.86)
    # The first case under the code order: c_low moves cannot change anything (the negative r=1.0 > 0.9),
    # so c_low is driven to 0.9 (15 steps) before c_high moves 7 steps to 1.55: 22 steps.
    b = bapo_search(np.array([1.52, 1.0]), np.array([1.0, -1.0]), ONES2, BapoConfig(order="code"))
    assert (b.c_low, b.n_steps, b.reached) == (0.9, 22, True)
    assert b.c_high == pytest.approx(1.55)


def test_pos_neg_ratio_target():
    r, a = HARD_NEGATIVES
    # Ratio 1.0 (the code's yaml default): at c_low = 0.86, pos/neg = 1/0.95 = 1.053 >= 1 -> same stop as share 0.4.
    b = bapo_search(r, a, np.ones(4), BapoConfig(target="pos_neg_ratio", rho0=1.0))
    assert (b.n_steps, b.reached) == (49, True)
    assert b.pos_neg_ratio == pytest.approx(1 / 0.95)
    # Ratio 2.0 is out of reach (the 0.95 token stays): the search ends at (b-, b+) = (0.9, 3.0), 36 + 15 steps.
    b = bapo_search(r, a, np.ones(4), BapoConfig(target="pos_neg_ratio", rho0=2.0))
    assert (b.c_low, b.c_high, b.n_steps, b.reached) == (0.9, 3.0, 51, False)
    assert b.pos_neg_ratio == pytest.approx(1 / 0.95)


def test_value_measure_counts_clipped_tokens_at_the_bound():
    # Positive r=2.0 A=+1 contributes min(2, c_high); negative r=1.0 A=-2 contributes 2*max(1, c_low) = 2.
    # value: share c/(c+2) >= 0.4 <=> c >= 4/3 -> first candidate 1.35 (3 steps), share 1.35/3.35 = 0.403.
    # gradient: the positive token only counts once c_high > 2.0 -> 2.05 (17 steps), share 2/(2+2) = 0.5.
    r, a = np.array([2.0, 1.0]), np.array([1.0, -2.0])
    b = bapo_search(r, a, ONES2, BapoConfig(measure="value"))
    assert b.n_steps == 3 and b.c_high == pytest.approx(1.35) and b.share == pytest.approx(1.35 / 3.35)
    b = bapo_search(r, a, ONES2, BapoConfig(measure="gradient"))
    assert b.n_steps == 17 and b.c_high == pytest.approx(2.05) and b.share == pytest.approx(0.5)


def test_literal_measure_falls_as_c_low_rises_and_the_search_overshoots():
    # Positive r=1 A=+1: pos = 1 at every bound. Negative r=0.5 A=-1 (below every c_low).
    # value: neg = max(0.5, c_low) = c_low, share = 1/(1 + c_low): 0.625 at 0.6 falls to 0.526 at 0.9.
    r, a = np.array([1.0, 0.5]), np.array([1.0, -1.0])
    cfg = BapoConfig(measure="value", rho0=0.6)
    t = contribution_tables(r, a, ONES2, cfg)
    np.testing.assert_allclose(t.neg_L, cfg.lower_grid())
    share_L = t.pos_H[0] / (t.pos_H[0] + t.neg_L)
    assert share_L[0] == pytest.approx(0.625) and share_L[-1] == pytest.approx(1 / 1.9)
    assert np.all(np.diff(share_L) < 0)
    # rho0=0.7: unreachable literally, so the search drives both bounds to their max and fails (36 + 15 steps);
    # the gradient measure sees the r=0.5 negative as clipped (no gradient): share 1 at the start bounds.
    b = bapo_search(r, a, ONES2, BapoConfig(measure="value", rho0=0.7))
    assert (b.c_low, b.c_high, b.n_steps, b.reached) == (0.9, 3.0, 51, False)
    assert b.share == pytest.approx(1 / 1.9)
    b = bapo_search(r, a, ONES2, BapoConfig(measure="gradient", rho0=0.7))
    assert (b.c_low, b.c_high, b.n_steps, b.reached, b.share) == (0.6, 1.2, 0, True, 1.0)


def test_a_ratio_exactly_on_a_bound_counts_as_clipped():
    # Definition (algorithms.md 6.1): positive counts iff r < c_high, negative iff r > c_low (strict).
    # Positive r=1.25 (= the 2nd upper candidate): 0 at c_high in {1.2, 1.25}, 1.25 from 1.3 on.
    # Negative r=0.62 (= the 2nd lower candidate): 0.62 at c_low=0.6, 0 from c_low=0.62 on.
    t = contribution_tables(np.array([1.25, 0.62]), np.array([1.0, -1.0]), ONES2, BapoConfig())
    np.testing.assert_array_equal(t.pos_H[:3], [0.0, 0.0, 1.25])
    np.testing.assert_array_equal(t.neg_L[:3], [0.62, 0.0, 0.0])


# ---------------------------------------------------------------- reference and properties over random inputs


@pytest.mark.parametrize("measure", ["gradient", "value"])
def test_tables_match_the_ppo_objective_reference(measure):
    cfg = BapoConfig(measure=measure)
    for seed in range(5):
        r, a, m = random_tokens(seed)
        t = contribution_tables(r, a, m, cfg)
        ref_pos = [reference_sides(r, a, m, cfg.low_start, ch, measure)[0] for ch in cfg.upper_grid()]
        ref_neg = [reference_sides(r, a, m, cl, cfg.high_start, measure)[1] for cl in cfg.lower_grid()]
        np.testing.assert_allclose(t.pos_H, ref_pos, rtol=1e-12)
        np.testing.assert_allclose(t.neg_L, ref_neg, rtol=1e-12)


@pytest.mark.parametrize(
    "order,target,measure",
    list(itertools.product(["paper", "code"], ["share", "pos_neg_ratio"], ["gradient", "value"])),
)
def test_search_matches_the_loop_reference(order, target, measure):
    moved = []
    for seed, rho0 in itertools.product(range(6), [0.3, 0.45, 0.6]):
        cfg = BapoConfig(
            order=order, target=target, measure=measure, rho0=rho0 if target == "share" else rho0 / (1 - rho0)
        )
        r, a, m = random_tokens(seed, n=60)
        b = bapo_search(r, a, m, cfg)
        c_low, c_high, steps, met = reference_search(r, a, m, cfg)
        assert (b.c_low, b.c_high, b.n_steps, b.reached) == (c_low, c_high, steps, met)
        moved.append(steps)
    assert max(moved) > 0  # not only trivial 0-step searches


def test_gradient_share_is_monotone_in_both_bounds():
    cfg = BapoConfig()
    for seed in range(30):
        r, a, m = random_tokens(seed, n=300)
        t = contribution_tables(r, a, m, cfg)
        assert np.all(np.diff(t.pos_H) >= 0) and np.all(np.diff(t.neg_L) <= 0)
        share_HL = t.pos_H[:, None] / (t.pos_H[:, None] + t.neg_L[None, :])
        assert np.all(np.diff(share_HL, axis=0) >= -1e-15) and np.all(np.diff(share_HL, axis=1) >= -1e-15)


def test_value_share_never_rises_with_c_low():
    cfg = BapoConfig(measure="value")
    for seed in range(30):
        t = contribution_tables(*random_tokens(seed, n=300), cfg)
        assert np.all(np.diff(t.neg_L) >= 0)  # larger negative side -> smaller share


def test_share_target_equals_the_equivalent_ratio_target():
    # share >= rho <=> pos/neg >= rho/(1-rho) when pos > 0; the bounds agree (no exact ties with random floats).
    for seed, rho in itertools.product(range(10), [0.3, 0.5, 0.7]):
        r, a, m = random_tokens(seed)
        s = bapo_search(r, a, m, BapoConfig(rho0=rho))
        q = bapo_search(r, a, m, BapoConfig(target="pos_neg_ratio", rho0=rho / (1 - rho)))
        assert (s.c_low, s.c_high, s.n_steps, s.reached) == (q.c_low, q.c_high, q.n_steps, q.reached)


def test_tables_add_across_shards_like_a_data_parallel_all_reduce():
    cfg = BapoConfig(rho0=0.55)
    r, a, m = random_tokens(7, n=400)
    parts = [contribution_tables(r[k::2], a[k::2], m[k::2], cfg) for k in range(2)]
    summed = ContributionTables(parts[0].pos_H + parts[1].pos_H, parts[0].neg_L + parts[1].neg_L)
    whole, merged = bapo_search(r, a, m, cfg), pick_bounds(summed, cfg)
    assert (merged.c_low, merged.c_high, merged.n_steps, merged.reached) == (
        whole.c_low,
        whole.c_high,
        whole.n_steps,
        whole.reached,
    )
    assert merged.share == pytest.approx(whole.share, rel=1e-12)  # only the summation order differs
    assert whole.n_steps > 0  # the shards had to agree on a non-trivial answer


# ---------------------------------------------------------------- shapes, mask, edge cases


def test_batch_shaped_inputs_and_per_sequence_advantages():
    r, a, m = random_tokens(3, n=120)
    r_BL, m_BL = r.reshape(6, 20), m.reshape(6, 20)
    adv_B = np.array([1.0, -1.0, 0.5, -2.0, 0.3, -0.7])
    flat = bapo_search(r, np.repeat(adv_B, 20), m, BapoConfig())
    assert bapo_search(r_BL, adv_B[:, None], m_BL, BapoConfig()) == flat
    with pytest.raises(ValueError, match="adv of shape"):
        bapo_search(r_BL, adv_B, m_BL, BapoConfig())


def test_masked_tokens_are_ignored():
    # A masked-out positive with r = 1.0 would give share 1 at the start; without it the first case stands.
    r, a = np.array([1.52, 1.0, 1.0]), np.array([1.0, -1.0, 50.0])
    b = bapo_search(r, a, np.array([1, 1, 0]), BapoConfig())
    assert b.n_steps == 7 and b.c_high == pytest.approx(1.55)
    assert bapo_search(r, a, np.array([True, True, False]), BapoConfig()) == b


def test_no_positive_tokens_walks_to_the_end_of_the_path():
    # Share is 0 at every candidate: Algorithm 1 widens c_high to b+ then raises c_low to b-, unmet.
    r, a = np.array([1.0, 0.7]), np.array([-1.0, -1.0])
    b = bapo_search(r, a, ONES2, BapoConfig())
    assert (b.c_low, b.c_high, b.n_steps, b.reached, b.share, b.pos_neg_ratio) == (0.9, 3.0, 51, False, 0.0, 0.0)


@pytest.mark.parametrize("target,rho0", [("share", 0.4), ("pos_neg_ratio", 0.667)])
def test_a_candidate_with_both_sides_empty_does_not_meet_the_target(target, rho0):
    # Positive r=1.3 counts from c_high=1.35; negative r=0.7 counts until c_low reaches 0.7.
    # Code order: at c_low=0.7 (5 steps) both sides are 0 -> share 0 and pos/neg 0 (not inf), unmet;
    # c_low goes on to 0.9 (15 steps), then c_high to 1.35 (3 more): pos = 1.3, neg = 0, met at 18 steps.
    cfg = BapoConfig(order="code", target=target, rho0=rho0)
    b = bapo_search(np.array([1.3, 0.7]), np.array([1.0, -1.0]), ONES2, cfg)
    assert (b.c_low, b.n_steps, b.reached, b.share, b.pos_neg_ratio) == (0.9, 18, True, 1.0, np.inf)
    assert b.c_high == 1.35


@pytest.mark.parametrize("mask,adv", [(np.zeros(2), np.array([1.0, -1.0])), (ONES2, np.zeros(2))])
def test_no_loss_carrying_tokens_keep_the_start_bounds(mask, adv):
    # All masked, or all advantages 0: nothing to balance, so the bounds stay at (a-, a+) and nothing is reached.
    b = bapo_search(np.array([1.0, 2.0]), adv, mask, BapoConfig())
    assert (b.c_low, b.c_high, b.n_steps, b.reached, b.share) == (0.6, 1.2, 0, False, 0.0)
    assert bapo_search(np.zeros(0), np.zeros(0), np.zeros(0), BapoConfig()).n_steps == 0  # empty micro-batch


def test_metrics_are_flat_namespaced_floats():
    b = bapo_search(np.array([1.52, 1.0]), np.array([1.0, -1.0]), ONES2, BapoConfig())
    assert b.metrics() == pytest.approx(
        {
            "controller/bapo/c_low": 0.6,
            "controller/bapo/c_high": 1.55,
            "controller/bapo/pos_share": 1.52 / 2.52,
            "controller/bapo/search_steps": 7.0,
            "controller/bapo/reached": 1.0,
        }
    )
    assert b.measure == "gradient"


# ---------------------------------------------------------------- config validation


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"order": "lower_first"}, "order"),
        ({"target": "ratio"}, "target"),
        ({"measure": "loss"}, "measure"),
        ({"rho0": 1.0}, "rho0"),  # a share of 1 can never be reached with any negative token
        ({"rho0": 0.0}, "rho0"),
        ({"target": "pos_neg_ratio", "rho0": -1.0}, "rho0"),
        ({"low_step": 0.0}, "low_step"),
        ({"high_step": -0.05}, "high_step"),
        ({"low_max": 0.5}, "low_max"),  # below low_start
        ({"low_max": 1.1}, "low_max"),  # the clip range must contain 1
        ({"high_start": 0.95}, "high_start"),
        ({"high_max": 1.1}, "high_max"),  # below high_start
    ],
)
def test_config_rejects_bad_values_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=rf"BapoConfig\.{field} "):
        BapoConfig(**kwargs)


def test_ratio_target_accepts_values_above_one():
    assert BapoConfig(target="pos_neg_ratio", rho0=1.5).rho0 == 1.5


def test_config_embeds_in_pydantic_and_forbids_unknown_keys():
    pydantic = pytest.importorskip("pydantic")
    adapter = pydantic.TypeAdapter(BapoConfig)
    assert adapter.validate_python({"rho0": 0.5, "order": "code"}) == BapoConfig(rho0=0.5, order="code")
    with pytest.raises(pydantic.ValidationError, match="rho\n  Unexpected keyword argument"):
        adapter.validate_python({"rho": 0.5})
    with pytest.raises(pydantic.ValidationError, match="low_step"):
        adapter.validate_python({"low_step": 0})
