"""The controllers on synthetic prompts with known success probabilities (Bernoulli rollouts, seconds on CPU):
what they do inside the loop, not just in isolation."""

import numpy as np
import pytest

from rlbal.controllers import ClassifierConfig, Controllers, FilterConfig, PromptGDROConfig, RolloutGDROConfig
from rlbal.controllers.allocation import sqrt_allocation
from rlbal.controllers.sim import SimConfig, Simulator, SyntheticPrompts, allocator_table

EDGES10 = np.arange(1, 10) / 10
EDGES5 = np.arange(1, 5) / 5
POOL = SyntheticPrompts.mixture(2000, never=0.25, always=0.15, a=0.6, b=0.6, seed=0)
CLF5 = ClassifierConfig(num_bins=5, window=50, hysteresis=0.03)


def test_synthetic_prompts_sit_at_bin_centres():
    prompts = SyntheticPrompts.at_bin_centres(per_bin=2, edges=EDGES10, n_ref=4)
    np.testing.assert_allclose(prompts.pass_at(4), np.repeat(np.arange(0.05, 1.0, 0.1), 2))
    assert prompts.true_bins(EDGES10, 4).tolist() == np.repeat(np.arange(10), 2).tolist()
    with pytest.raises(ValueError, match="SimConfig.signal must be one of"):
        SimConfig(signal="surrogate")


@pytest.mark.parametrize("indicator,n_ref", [("response", 1), ("any", 4)])
def test_classifier_bins_converge_to_the_true_difficulty(indicator, n_ref):
    prompts = SyntheticPrompts.at_bin_centres(per_bin=20, edges=EDGES10, n_ref=n_ref)
    ctl = Controllers.from_configs(ClassifierConfig(window=0, indicator=indicator), n_rollouts=4)
    Simulator(prompts, ctl, SimConfig(batch_size=100, seed=1)).run(600)  # each prompt seen ~300 times
    got, true = ctl.classifier.classify(np.arange(len(prompts))), prompts.true_bins(EDGES10, n_ref)
    assert (got == true).mean() >= 0.9 and np.abs(got - true).max() <= 1
    np.testing.assert_allclose(ctl.classifier.estimate(np.arange(len(prompts))), prompts.pass_at(n_ref), atol=0.12)


def test_any_correct_bins_saturate_at_eight_rollouts_while_response_bins_separate():
    # at n = 8 a prompt with p = 0.3 is solved at least once 94% of the time: 'any' puts it with the p = 1 ones
    for indicator, mid_in_top in (("any", 0.9), ("response", 0.05)):
        ctl = Controllers.from_configs(ClassifierConfig(num_bins=5, indicator=indicator), n_rollouts=8)
        Simulator(POOL, ctl, SimConfig(batch_size=64, seed=0)).run(300)
        mid = (POOL.p_P > 0.3) & (POOL.p_P < 0.6)
        top = ctl.classifier.classify(np.flatnonzero(mid), record=False) == 4
        assert (top.mean() > mid_in_top) if indicator == "any" else (top.mean() < mid_in_top)


def test_no_information_means_uniform_counts_every_step():
    # every prompt p = 0.5: bins form from noise, but every class has the same outcome statistics; the allocation
    # stays at n_bar for nearly every prompt and never strays by more than one rollout
    prompts = SyntheticPrompts(np.full(256, 0.5))
    ctl = Controllers.from_configs(
        ClassifierConfig(num_bins=10), rollout=RolloutGDROConfig(n_bar=8, n_max=12), n_rollouts=8
    )
    trace = Simulator(prompts, ctl, SimConfig(batch_size=256, seed=0)).run(300)
    assert np.all(np.abs(trace.counts_G - 8) <= 1) and (trace.counts_G == 8).mean() > 0.95
    assert np.nanmax(trace.delta_S[1:]) < 0.2


@pytest.mark.parametrize("allocator", ["bandit", "sqrt"])
def test_allocator_tracks_the_neyman_rule_of_the_true_variances(allocator):
    prompts = SyntheticPrompts.at_bin_centres(per_bin=30, edges=EDGES10, n_ref=1)
    ctl = Controllers.from_configs(ClassifierConfig(window=0), rollout=RolloutGDROConfig(allocator=allocator))
    trace = Simulator(prompts, ctl, SimConfig(batch_size=100, seed=3)).run(300)
    assert np.bincount(trace.step_G, trace.counts_G).tolist() == [400] * 300
    true_bins = prompts.true_bins(EDGES10, 1)
    var_true_C = np.bincount(true_bins, prompts.p_P * (1 - prompts.p_P)) / np.bincount(true_bins)
    neyman_C, _ = sqrt_allocation(np.bincount(true_bins), var_true_C, 4.0, 2, 12)
    n_C = trace.mean_count_per_bin(10, start=200)
    # variance peaks at p = 0.5: counts rise to the middle bins and fall after, like the rule of the true variances
    assert np.argmax(n_C) in (4, 5) and n_C[0] < n_C[2] < n_C[4] and n_C[9] < n_C[7] < n_C[5]
    assert np.abs(n_C - neyman_C).max() < (0.6 if allocator == "sqrt" else 1.0)


def test_default_allocator_beats_uniform_on_informative_rollouts_by_more_than_the_knapsack_anchor():
    rows = {
        r["allocator"]: r
        for r in allocator_table(
            POOL, classifier=CLF5, n_bar=8, n_max=16, steps=150, batch_size=64, seeds=(0, 1), warmup=50
        )
    }
    gain = {k: rows[k]["informative"] - rows["uniform"]["informative"] for k in rows}
    assert gain["bandit"] > 0.1 and gain["bandit"] >= gain["knapsack"]
    # budget leaves the never-solved and always-solved prompts for the ones in between
    share = rows["bandit"]["band_share"]
    assert share[0] < 0.2 < 0.25 and share[4] < 0.14 < 0.15 and share[2] > 0.35 > 0.264
    # no flicker: the per-class counts move by well under one rollout per step (prompt-weighted)
    assert rows["bandit"]["delta"] < 0.7
    # the price converges (it is solved each step; its late values barely move)


def test_price_settles_and_allocation_follows_the_bins_pass_rates():
    ctl = Controllers.from_configs(CLF5, rollout=RolloutGDROConfig(n_bar=8, n_max=16), n_rollouts=8)
    trace = Simulator(POOL, ctl, SimConfig(batch_size=64, seed=4)).run(300)
    assert np.std(trace.mu_S[150:]) < 0.1 * np.mean(trace.mu_S[150:])
    n_C = trace.mean_count_per_bin(5, start=150)
    pass_C = ctl.rollout.m1
    assert np.all(np.diff(pass_C) > 0)  # response bins are ordered by pass rate
    assert n_C[2] == n_C.max() and n_C[0] < n_C[1] and n_C[4] < n_C[3]  # most budget where p(1-p) peaks


def test_band_filtering_no_longer_blinds_the_classifier():
    # a [0.2, 0.8] band keeps only groups with correct answers; the classifier must still see the dropped ones
    ctl = Controllers.from_configs(
        ClassifierConfig(num_bins=5), PromptGDROConfig(), RolloutGDROConfig(n_bar=8, n_max=16), n_rollouts=8
    )
    sim = Simulator(POOL, ctl, SimConfig(batch_size=64, seed=0, filter=FilterConfig()))
    trace = sim.run(60)
    tracked = np.flatnonzero(~np.isnan(ctl.classifier.estimate(np.arange(len(POOL)))))
    est = ctl.classifier.estimate(tracked)
    assert (est == 1.0).mean() < 0.5 and (est == 0.0).mean() > 0.2  # never-solved prompts are known as such
    np.testing.assert_allclose(est, POOL.p_P[tracked], atol=0.45)
    assert (~trace.trained_G).sum() > 0 and trace.trained_G.sum() == 60 * 64
    assert ctl.rollout.m1[0] < 0.05  # the hardest class's statistics include its all-wrong groups


@pytest.mark.parametrize("signal,top", [("failure_rate", 0), ("reward_variance", 2)])
def test_prompt_gdro_concentrates_on_the_highest_loss_bin(signal, top):
    # 3 bins (edges .4/.75, the released 3-bin case) on pass@4; per-response p = .054, .193, .405:
    # failure 1 - p is highest in bin 0, the reward variance p(1-p) in bin 2
    prompts = SyntheticPrompts.at_bin_centres(per_bin=50, edges=np.array([0.4, 0.75]), n_ref=4)
    ctl = Controllers.from_configs(
        ClassifierConfig(num_bins=3, edges=(0.4, 0.75), window=0, indicator="any"), PromptGDROConfig()
    )
    trace = Simulator(prompts, ctl, SimConfig(batch_size=60, seed=0, signal=signal, signal_scale=30.0)).run(200)
    q_C = trace.q_SC[-50:].mean(0)
    assert q_C.argmax() == top and q_C[top] > 0.7
    order = np.argsort(q_C)[::-1]
    assert order.tolist() == ([0, 1, 2] if top == 0 else [2, 1, 0])  # ranked by loss, not by bin position
    late = trace.step_G >= 150
    late_bins, late_w = trace.bins_G[late], trace.weights_G[late]
    assert late_w[late_bins == top].mean() > 1.5 > 0.5 > late_w[late_bins == 2 - top].mean()


def test_prompt_gdro_sampling_realises_q_in_the_drawn_batches():
    ctl = Controllers.from_configs(
        ClassifierConfig(num_bins=3, unseen="separate"),
        PromptGDROConfig(eta=2.0, realise="sampling"),
        num_prompts=len(POOL),
    )
    sim = Simulator(POOL, ctl, SimConfig(batch_size=64, seed=0, signal_scale=3.0))
    sim.run(50)
    expected, drawn, pool = np.zeros(4), np.zeros(4), np.zeros(4)
    for _ in range(150):
        sizes = ctl.sampler.sizes()
        expected += ctl.prompt_gdro.distribution(sizes > 0)  # the q this batch is drawn with
        pool += sizes / sizes.sum()
        drawn += np.bincount(sim.step()["bins"], minlength=4) / 64
    expected, drawn, pool = expected / 150, drawn / 150, pool / 150
    np.testing.assert_allclose(drawn, expected, atol=3 * np.sqrt(0.25 / (150 * 64)))
    assert drawn[0] > pool[0] + 0.1  # failure_rate: the hardest class is drawn far above its pool share
