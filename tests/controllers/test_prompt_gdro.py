"""Prompt-GDRO: scripted scores, both weight forms, sampling with importance weights, checkpoints."""

import json

import numpy as np
import pytest

from rlbal.controllers.prompt_gdro import PromptGDRO, PromptGDROConfig
from rlbal.controllers.records import PromptResult


def result(bins, signal, counts=None):
    n = len(bins)
    counts = counts or [4] * n
    return PromptResult(
        ids=np.arange(n), bins=bins, n_rollouts=counts, n_correct=[0] * n, reward_mean=[0.0] * n, loss_signal=signal
    )


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(eta=-1), "eta must be > 0, got -1"),
        (dict(gamma=1.5), r"gamma must be in \[0, 1\], got 1.5"),
        (dict(ema_beta=0.0), "ema_beta must be in"),
        (dict(score_clip=0.0), "score_clip must be > 0 or None"),
        (dict(omega_max=0.5), "omega_max must be >= 1"),
        (dict(weight_form="softmax"), "weight_form must be one of"),
    ],
)
def test_config_validation_names_the_field(kw, match):
    with pytest.raises(ValueError, match="PromptGDROConfig." + match):
        PromptGDROConfig(**kw)


def test_scripted_ema_with_share_normalisation_and_floor():
    g = PromptGDRO(PromptGDROConfig(ema_beta=0.5, share_norm=True, share_floor=0.2), num_classes=3)
    # step 1: class 0 mean (1+2+3)/3 = 2 at share 3/4 -> 8/3; class 1 mean 8 at share 1/4 -> 32 (first: init)
    g.observe(result([0, 0, 0, 1], [1.0, 2.0, 3.0, 8.0]))
    np.testing.assert_allclose(g.scores, [8 / 3, 32.0, 0.0])
    # step 2: class 1 mean 4 / 0.5 = 8 -> 0.5 * 32 + 0.5 * 8 = 20; class 2 first seen 0.1 / 0.5 = 0.2; class 0 kept
    g.observe(result([1, 2], [4.0, 0.1]))
    np.testing.assert_allclose(g.scores, [8 / 3, 20.0, 0.2])
    # step 3: class 0 mean 1 / 0.9; class 2 share 0.1 is below the floor 0.2 -> 1 / 0.2 = 5
    g.observe(result([0] * 9 + [2], [1.0] * 10))
    np.testing.assert_allclose(g.scores, [0.5 * 8 / 3 + 0.5 / 0.9, 20.0, 0.5 * 0.2 + 0.5 * 5])
    assert g.seen.tolist() == [True, True, True]


def test_average_over_prompts_or_responses():
    # class 0: prompts with signal 1 (2 responses) and 0 (6 responses): prompt mean 0.5, response mean 2/8 = 0.25
    for over, expected in (("prompts", 0.5), ("responses", 0.25)):
        g = PromptGDRO(PromptGDROConfig(share_norm=False, average_over=over), num_classes=2)
        g.observe(result([0, 0, 1], [1.0, 0.0, 5.0], counts=[2, 6, 4]))
        np.testing.assert_allclose(g.scores, [expected, 5.0])


def test_code_form_weights_by_hand():
    g = PromptGDRO(PromptGDROConfig(eta=1.0, gamma=0.1), num_classes=3)
    g.scores = np.array([0.0, np.log(3.0), 0.0])
    # present {0, 1}: softmax = [1/4, 3/4] -> q = 0.9 q + 0.1 / 2 = [0.275, 0.725]; class 2 absent -> not considered
    np.testing.assert_allclose(g.distribution([True, True, False]), [0.275, 0.725, 0.0])
    # counts 2, 4, 6: sum n q = 0.55 + 2.9 + 4.35 = 7.8 over 12 responses -> scale 12 / 7.8
    w = g.weights([0, 1, 1], counts=[2, 4, 6])
    np.testing.assert_allclose(w, np.array([0.275, 0.725, 0.725]) * 12 / 7.8)
    assert w @ np.array([2, 4, 6]) == pytest.approx(12.0)  # mean 1 over responses
    capped = PromptGDRO(PromptGDROConfig(eta=1.0, gamma=0.1, omega_max=1.1), num_classes=3)
    capped.scores = g.scores
    np.testing.assert_allclose(capped.weights([0, 1, 1], counts=[2, 4, 6]), [0.275 * 12 / 7.8, 1.1, 1.1])
    np.testing.assert_allclose(g.weights([2, 2]), [1.0, 1.0])  # a single class present: q = 1 -> mean-1 -> 1


def test_paper_form_weights_cap_and_score_clip():
    g = PromptGDRO(PromptGDROConfig(eta=1.0, weight_form="paper", omega_max=2.0), num_classes=3)
    g.scores = np.array([0.0, np.log(3.0), -np.log(2.0)])
    np.testing.assert_allclose(g.weights([0, 1, 2]), [1.0, 2.0, 0.5])  # exp(S) = 1, 3 -> cap 2, 1/2
    clipped = PromptGDRO(PromptGDROConfig(eta=1.0, weight_form="paper", score_clip=0.5), num_classes=3)
    clipped.scores = g.scores
    np.testing.assert_allclose(clipped.weights([0, 1, 2]), [1.0, np.exp(0.5), np.exp(-0.5)])


def test_observe_scores_only_the_trained_groups():
    g = PromptGDRO(PromptGDROConfig(share_norm=False), num_classes=2)
    g.observe(
        PromptResult(
            ids=[0, 1, 2],
            bins=[0, 0, 1],
            n_rollouts=[4, 4, 4],
            n_correct=[0, 4, 2],
            reward_mean=[0, 1, 0.5],
            loss_signal=[1.0, np.nan, 0.5],
            trained=[True, False, True],
        )
    )
    assert g.scores.tolist() == [1.0, 0.5]  # the dropped group (no update, no signal) is not averaged in
    with pytest.raises(ValueError, match="finite for every trained prompt"):
        PromptResult(ids=[0], bins=[0], n_rollouts=[4], n_correct=[0], reward_mean=[0], loss_signal=[np.nan])


def test_sampling_weights_are_ones_and_is_weights_needs_sampling():
    g = PromptGDRO(PromptGDROConfig(realise="sampling"), num_classes=2)
    g.scores = np.array([0.0, 3.0])
    assert g.weights([0, 1]).tolist() == [1.0, 1.0]  # the preference is in which prompts are drawn
    with pytest.raises(ValueError, match="is_weights applies to realise='sampling' only"):
        PromptGDROConfig(is_weights=True)


def test_metrics_by_hand():
    g = PromptGDRO(PromptGDROConfig(), num_classes=4)
    m = g.metrics()
    assert m["controller/prompt_gdro/weight_entropy"] == pytest.approx(np.log(4))  # all scores 0: uniform
    g.observe(
        PromptResult(
            ids=[0, 1, 2],
            bins=[1, 1, 3],
            n_rollouts=[4, 4, 4],
            n_correct=[1, 3, 0],
            reward_mean=[0.25, 0.75, 0.0],
            loss_signal=[0.75, 0.25, 1.0],
        )
    )
    g.weights([1, 3])
    m = g.metrics()
    assert m["controller/prompt_gdro/count/bin_1"] == 2.0 and m["controller/prompt_gdro/count/bin_0"] == 0.0
    assert m["controller/prompt_gdro/reward_mean/bin_1"] == pytest.approx(0.5)
    assert m["controller/prompt_gdro/multiplier/bin_0"] == 0.0  # absent from the last decision
    q = g.distribution()
    assert [m[f"controller/prompt_gdro/weight/bin_{b}"] for b in range(4)] == pytest.approx(q.tolist())
    assert m["controller/prompt_gdro/weight_entropy"] == pytest.approx(-(q * np.log(q)).sum())


def test_state_dict_round_trip_and_rejects_other_configs():
    g = PromptGDRO(PromptGDROConfig(seed=7), num_classes=3)
    g.observe(result([0, 1, 2, 2], [0.9, 0.1, 0.5, 0.4]))
    state = json.loads(json.dumps(g.state_dict()))
    back = PromptGDRO(PromptGDROConfig(seed=7), num_classes=3)
    back.load_state_dict(state)
    np.testing.assert_array_equal(g.weights([0, 2]), back.weights([0, 2]))
    assert back.metrics() == g.metrics()
    with pytest.raises(ValueError, match="config.eta: saved=0.65, current=1.0"):
        PromptGDRO(PromptGDROConfig(eta=1.0, seed=7), num_classes=3).load_state_dict(state)
    with pytest.raises(ValueError, match="class_names"):
        PromptGDRO(PromptGDROConfig(seed=7), num_classes=4).load_state_dict(state)


def test_bins_out_of_range_are_rejected():
    with pytest.raises(ValueError, match=r"bins must lie in \[0, 3\)"):
        PromptGDRO(num_classes=3).weights([0, 3])
