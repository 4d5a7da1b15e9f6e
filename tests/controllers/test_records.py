"""Records, loss signals and checkpoint helpers of rlbal.controllers.records."""

import json

import numpy as np
import pytest

from rlbal.controllers.records import (
    LOSS_SIGNALS,
    REWARD_SIGNALS,
    Allocation,
    PromptResult,
    check_state,
    clipped_surrogate_signal,
    decode_array,
    encode_array,
    reward_signal,
    rng_from_state,
    rng_state,
)


def grpo_advantages(reward_R, prompt_R, eps=1e-6):
    """Slow reference GRPO advantage: (r - mean) / (Bessel std + eps) within each prompt's group."""
    adv = np.zeros(len(reward_R))
    for p in set(prompt_R):
        idx = [i for i, q in enumerate(prompt_R) if q == p]
        r = np.array([reward_R[i] for i in idx], float)
        adv[idx] = (r - r.mean()) / (r.std(ddof=1) + eps)
    return adv


def test_from_responses_aggregates_counts_means_and_reward_signals():
    # prompt 10: rewards 1,0,0 -> mean 1/3, unbiased var ((2/3)^2 + 2 (1/3)^2) / 2 = 1/3; prompt 20: 1,1 -> var 0
    kw = dict(
        ids=[10, 20],
        bins=[0, 3],
        prompt_index_R=[0, 0, 0, 1, 1],
        correct_R=[1, 0, 0, 1, 1],
        reward_R=[1.0, 0.0, 0.0, 1.0, 1.0],
    )
    r = PromptResult.from_responses(**kw, signal="failure_rate")
    assert r.n_rollouts.tolist() == [3, 2] and r.n_correct.tolist() == [1, 2]
    np.testing.assert_allclose(r.reward_mean, [1 / 3, 1.0])
    np.testing.assert_allclose(r.loss_signal, [2 / 3, 0.0])
    np.testing.assert_allclose(PromptResult.from_responses(**kw, signal="reward_variance").loss_signal, [1 / 3, 0.0])
    np.testing.assert_allclose(PromptResult.from_responses(**kw, signal="neg_sq_stderr").loss_signal, [-1 / 9, 0.0])
    np.testing.assert_allclose(PromptResult.from_responses(**kw, signal="neg_reward").loss_signal, [-1 / 3, -1.0])
    # a learner-computed per-response signal is averaged per prompt: (3 + 0 + 0) / 3 and (1 + 2) / 2
    r = PromptResult.from_responses(**kw, signal="surrogate", loss_R=[3.0, 0.0, 0.0, 1.0, 2.0])
    np.testing.assert_allclose(r.loss_signal, [1.0, 1.5])


def test_surrogate_signal_is_zero_per_prompt_with_centred_advantages_at_ratio_one():
    # GRPO advantages sum to 0 within each group; at ratio 1 the signal per response is -A, so its prompt mean is 0
    reward_R = [1, 0, 0, 1, 1, 0, 0, 0, 1]
    prompt_R = [0, 0, 0, 0, 1, 1, 1, 2, 2]
    adv_R = grpo_advantages(reward_R, prompt_R)
    rng = np.random.default_rng(0)
    mask_RL = (rng.random((9, 7)) < 0.8).astype(float)
    mask_RL[:, 0] = 1.0  # ragged lengths, at least one token each
    sig_R = clipped_surrogate_signal(adv_R, np.ones((9, 7)), mask_RL, 0.2, 0.28)
    np.testing.assert_allclose(sig_R, -adv_R, atol=1e-12)
    res = PromptResult.from_responses(
        [0, 1, 2], [0, 0, 0], prompt_R, np.array(reward_R) > 0, reward_R, signal="surrogate", loss_R=sig_R
    )
    np.testing.assert_allclose(res.loss_signal, [0.0, 0.0, 0.0], atol=1e-12)
    assert np.abs(adv_R).max() > 0.5  # the advantages themselves are not small


def test_surrogate_signal_is_nonzero_only_through_clipping_and_ratio_drift():
    # A=+1, ratios 1.5, 0.5: max(-1.5, -1.28) = -1.28, max(-0.5, -0.8) = -0.5 -> mean -0.89
    # A=-1, ratios 1.5, 0.5: max(1.5, 1.28) = 1.5,  max(0.5, 0.8) = 0.8   -> mean 1.15; prompt mean 0.13
    sig_R = clipped_surrogate_signal([1.0, -1.0], [[1.5, 0.5], [1.5, 0.5]], np.ones((2, 2)), 0.2, 0.28)
    np.testing.assert_allclose(sig_R, [-0.89, 1.15])
    assert sig_R.mean() == pytest.approx(0.13)


def test_loss_signal_names_are_a_closed_set():
    assert set(REWARD_SIGNALS) < set(LOSS_SIGNALS)
    assert {"surrogate", "surrogate_kl", "failure_rate", "reward_variance"} <= set(LOSS_SIGNALS)
    with pytest.raises(ValueError, match="surrogate.*valid names.*failure_rate"):
        reward_signal("surrogate", [1], [2], [0.5], [0.5])


@pytest.mark.parametrize(
    "field,kw,match",
    [
        ("n_correct", dict(n_correct=[5]), "n_correct must lie in"),
        ("n_rollouts", dict(n_rollouts=[0], n_correct=[0]), "n_rollouts must be >= 1"),
        ("ids", dict(ids=[-1]), "ids must be >= 0"),
        ("loss_signal", dict(loss_signal=[np.nan]), "loss_signal must be finite"),
        ("bins", dict(bins=[0, 1]), "bins has 2 entries, expected 1"),
    ],
)
def test_prompt_result_validation_names_the_field(field, kw, match):
    base = dict(ids=[0], bins=[0], n_rollouts=[4], n_correct=[1], reward_mean=[0.25], loss_signal=[0.75])
    with pytest.raises(ValueError, match=match):
        PromptResult(**{**base, **kw})


def test_allocation_total_and_validation():
    a = Allocation(ids=[3, 4], bins=[0, 2], weights=[1.5, 0.5], counts=[6, 2])
    assert a.total == 8 and len(a) == 2 and a.counts.dtype == np.int64
    with pytest.raises(ValueError, match="Allocation.counts must be >= 1"):
        Allocation(ids=[3], bins=[0], weights=[1.0], counts=[0])


def test_array_encoding_and_rng_state_round_trip_through_json():
    arr = np.array([[1, 2**63 - 1], [0, 7]], np.uint64)
    back = decode_array(json.loads(json.dumps(encode_array(arr))))
    assert back.dtype == np.uint64 and np.array_equal(back, arr)
    rng = np.random.default_rng(5)
    rng.random(3)
    clone = rng_from_state(json.loads(json.dumps(rng_state(rng))))
    assert np.array_equal(clone.random(4), rng.random(4))


def test_check_state_rejects_other_kinds_and_configs():
    state = {"kind": "prompt_gdro", "identity": {"config": {"eta": 0.65, "gamma": 0.01}}}
    check_state(state, "prompt_gdro", {"config": {"eta": 0.65, "gamma": 0.01}})
    with pytest.raises(ValueError, match="expected a 'rollout_gdro' checkpoint"):
        check_state(state, "rollout_gdro", {"config": {}})
    with pytest.raises(ValueError, match=r"config\.eta: saved=0\.65, current=1\.0"):
        check_state(state, "prompt_gdro", {"config": {"eta": 1.0, "gamma": 0.01}})
