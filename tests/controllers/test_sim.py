"""The controllers on synthetic prompts with known success probabilities (Bernoulli rollouts, seconds on CPU)."""
import numpy as np
import pytest

from rlbal.controllers import ClassifierConfig, Controllers, PromptGDROConfig, RolloutGDROConfig
from rlbal.controllers.rollout_gdro import sqrt_allocation
from rlbal.controllers.sim import SimConfig, Simulator, SyntheticPrompts

EDGES10 = np.arange(1, 10) / 10


def late_mean_count_per_bin(trace, start, num_classes=10):
    bins, counts = trace.bins_SN[start:].ravel(), trace.counts_SN[start:].ravel()
    return np.bincount(bins, counts, num_classes) / np.maximum(np.bincount(bins, minlength=num_classes), 1)


def test_synthetic_prompts_sit_at_bin_centres():
    prompts = SyntheticPrompts.at_bin_centres(per_bin=2, edges=EDGES10, n_ref=4)
    np.testing.assert_allclose(prompts.pass_at(4), np.repeat(np.arange(0.05, 1.0, 0.1), 2))
    assert prompts.true_bins(EDGES10, 4).tolist() == np.repeat(np.arange(10), 2).tolist()
    with pytest.raises(ValueError, match="SimConfig.signal must be one of"):
        SimConfig(signal="surrogate")


def test_classifier_bins_converge_to_the_true_difficulty():
    prompts = SyntheticPrompts.at_bin_centres(per_bin=20, edges=EDGES10, n_ref=4)
    ctl = Controllers.from_configs(ClassifierConfig(window=0), n_rollouts=4)
    Simulator(prompts, ctl, SimConfig(batch_size=100, seed=1)).run(600)  # each prompt seen ~300 times
    got, true = ctl.classifier.classify(np.arange(len(prompts))), prompts.true_bins(EDGES10, 4)
    # estimate std ~ sqrt(.25 / 300) = .03 against a half-bin margin of .05: nearly all exact, none off by 2
    assert (got == true).mean() >= 0.9 and np.abs(got - true).max() <= 1
    np.testing.assert_allclose(ctl.classifier.estimate(np.arange(len(prompts))), prompts.pass_at(4), atol=0.12)


def test_rollout_bandit_spends_exactly_the_budget_favours_high_variance_and_settles_mu():
    # neg_sq_stderr = -s^2/n: the Lagrangian best response to -v/n - mu n is n = sqrt(v / mu) (Neyman)
    prompts = SyntheticPrompts.at_bin_centres(per_bin=30, edges=EDGES10, n_ref=4)
    late_mu = {}
    for mu_init in (0.0, 2.0):
        ctl = Controllers.from_configs(ClassifierConfig(window=0), rollout=RolloutGDROConfig(mu_init=mu_init))
        trace = Simulator(prompts, ctl, SimConfig(batch_size=100, seed=2, signal="neg_sq_stderr",
                                                  signal_scale=50.0)).run(350)
        assert trace.counts_SN.sum(1).tolist() == [400] * 350  # realised mean exactly n_bar = 4 at every step
        assert trace.counts_SN.min() >= 2 and trace.counts_SN.max() <= 12
        n_C = late_mean_count_per_bin(trace, 150)
        var_C = ctl.rollout.var  # within-prompt variance grows with the bin here (p <= 0.53 at pass@4 centres)
        assert n_C[7:].mean() - n_C[:3].mean() > 1.0 and np.corrcoef(var_C, n_C)[0, 1] > 0.7
        # mu settles where the bandits' preferred mean equals the budget
        late_mu[mu_init] = trace.mu_S[150:]
        assert late_mu[mu_init].std() < 0.06 and abs(trace.preferred_S[150:].mean() - 4.0) < 0.03
    # ... at the same price from either start (0 rises, 2 falls)
    assert abs(late_mu[0.0].mean() - late_mu[2.0].mean()) < 0.15 and 0.9 < late_mu[0.0].mean() < 1.5


def test_sqrt_allocator_tracks_the_neyman_rule_of_the_true_variances():
    prompts = SyntheticPrompts.at_bin_centres(per_bin=30, edges=EDGES10, n_ref=4)
    ctl = Controllers.from_configs(ClassifierConfig(window=0), rollout=RolloutGDROConfig(allocator="sqrt"))
    trace = Simulator(prompts, ctl, SimConfig(batch_size=100, seed=3)).run(300)
    assert trace.counts_SN.sum(1).tolist() == [400] * 300
    true_bins = prompts.true_bins(EDGES10, 4)
    var_true_C = np.bincount(true_bins, prompts.p_P * (1 - prompts.p_P)) / np.bincount(true_bins)
    neyman_C, _ = sqrt_allocation(np.bincount(true_bins), var_true_C, 4.0, 2, 12)
    n_C = late_mean_count_per_bin(trace, 200)
    assert np.all(np.diff(n_C) > 0)  # strictly more rollouts for every higher-variance bin
    # the controller sees estimated variances of its own (noisy, partly misclassified) bins, not the truth
    assert np.abs(n_C - neyman_C).max() < 0.6 and np.abs(n_C - neyman_C).mean() < 0.25


@pytest.mark.parametrize("signal,top", [("failure_rate", 0), ("reward_variance", 2)])
def test_prompt_gdro_concentrates_on_the_highest_loss_bin(signal, top):
    # 3 bins (edges .4/.75, the released 3-bin case); per-response p = .054, .193, .405:
    # failure 1 - p is highest in bin 0, the reward variance p(1-p) in bin 2
    prompts = SyntheticPrompts.at_bin_centres(per_bin=50, edges=np.array([0.4, 0.75]), n_ref=4)
    ctl = Controllers.from_configs(ClassifierConfig(num_bins=3, edges=(0.4, 0.75), window=0), PromptGDROConfig())
    trace = Simulator(prompts, ctl, SimConfig(batch_size=60, seed=0, signal=signal, signal_scale=10.0)).run(200)
    q_C = trace.q_SC[-50:].mean(0)
    assert q_C.argmax() == top and q_C[top] > 0.7
    order = np.argsort(q_C)[::-1]
    assert order.tolist() == ([0, 1, 2] if top == 0 else [2, 1, 0])  # ranked by loss, not by bin position
    late_bins, late_w = trace.bins_SN[-50:].ravel(), trace.weights_SN[-50:].ravel()
    assert late_w[late_bins == top].mean() > 1.5 > 0.5 > late_w[late_bins == 2 - top].mean()
