"""Advantage estimators over ragged groups: hand-derived values and a plain-loop reference."""

import math
import random

import pytest
import torch

from rlbal.algo.advantages import AdvantageOptions, advantage_metrics, compute_advantages

# Three ragged groups, deliberately interleaved and with non-dense ids {0, 2, 5}:
#   group 0: rewards 1, 0, 0   (n = 3, mean 1/3)
#   group 2: reward 2          (n = 1, singleton)
#   group 5: rewards 1, 3      (n = 2, mean 2)
REWARDS = torch.tensor([1.0, 1.0, 0.0, 2.0, 0.0, 3.0])
GROUPS = torch.tensor([0, 5, 0, 2, 0, 5])


def test_grpo_bessel_by_hand():
    # group 0: devs 2/3, -1/3, -1/3; sum sq = 4/9 + 1/9 + 1/9 = 2/3; Bessel var = (2/3)/2 = 1/3, std = 0.57735
    #   -> A = 0.666667/0.57735 = 1.154701, -0.577350
    # group 5: devs -1, +1; Bessel var = 2/1 = 2, std = 1.414214 -> A = -0.707107, +0.707107
    # singleton -> 0
    adv = compute_advantages("grpo", REWARDS, GROUPS, AdvantageOptions(std="bessel", eps=0.0))
    assert adv.tolist() == pytest.approx([1.154701, -0.707107, -0.577350, 0.0, -0.577350, 0.707107], abs=1e-6)


def test_grpo_population_by_hand():
    # group 0: population var = (2/3)/3 = 2/9, std = 0.471405 -> A = 1.414214, -0.707107
    # group 5: population var = 2/2 = 1 -> A = -1, +1
    adv = compute_advantages("grpo", REWARDS, GROUPS, AdvantageOptions(std="population", eps=0.0))
    assert adv.tolist() == pytest.approx([1.414214, -1.0, -0.707107, 0.0, -0.707107, 1.0], abs=1e-6)


def test_grpo_eps_and_all_equal_group():
    # equal rewards: dev 0 -> 0 / (0 + eps) = 0, never nan
    adv = compute_advantages("grpo", torch.tensor([1.0, 1.0, 1.0]), torch.tensor([0, 0, 0]))
    assert adv.tolist() == [0.0, 0.0, 0.0]
    # eps = 1 on group {0, 2}: std (Bessel) = 1.414214 -> A = -1 / 2.414214 = -0.414214
    adv = compute_advantages("grpo", torch.tensor([0.0, 2.0]), torch.tensor([0, 0]), AdvantageOptions(eps=1.0))
    assert adv.tolist() == pytest.approx([-0.414214, 0.414214], abs=1e-6)


def test_dr_grpo_by_hand():
    # r - mean: group 0 -> 2/3, -1/3, -1/3; group 5 -> -1, +1; singleton 0
    adv = compute_advantages("dr_grpo", REWARDS, GROUPS)
    assert adv.tolist() == pytest.approx([2 / 3, -1.0, -1 / 3, 0.0, -1 / 3, 1.0], abs=1e-6)


def test_rloo_by_hand():
    # leave-one-out: group 0: 1 - (0+0)/2 = 1, 0 - (1+0)/2 = -0.5 (twice); group 5: 1 - 3 = -2, 3 - 1 = 2
    adv = compute_advantages("rloo", REWARDS, GROUPS)
    assert adv.tolist() == pytest.approx([1.0, -2.0, -0.5, 0.0, -0.5, 2.0], abs=1e-6)


@pytest.mark.parametrize("name", ["grpo", "dr_grpo", "rloo"])
def test_singleton_groups_get_exactly_zero(name):
    adv = compute_advantages(name, torch.tensor([5.0, -3.0]), torch.tensor([0, 1]))
    assert adv.tolist() == [0.0, 0.0]


def test_clip_then_weight():
    # dr_grpo on {0, 10}: -5, +5; clip at 2 -> -2, +2; weights 3 and 0.5 -> -6, +1
    adv = compute_advantages(
        "dr_grpo",
        torch.tensor([0.0, 10.0]),
        torch.tensor([0, 0]),
        AdvantageOptions(clip=2.0),
        weight_B=torch.tensor([3.0, 0.5]),
    )
    assert adv.tolist() == [-6.0, 1.0]


def _loop_reference(name: str, rewards: list[float], groups: list[int], std: str, eps: float) -> list[float]:
    """Obviously-correct per-group Python loop."""
    out = [0.0] * len(rewards)
    for g in set(groups):
        idx = [i for i, gi in enumerate(groups) if gi == g]
        rs = [rewards[i] for i in idx]
        n = len(rs)
        if n == 1:
            continue
        mean = sum(rs) / n
        var = sum((r - mean) ** 2 for r in rs) / (n - 1 if std == "bessel" else n)
        for i in idx:
            if name == "grpo":
                out[i] = (rewards[i] - mean) / (math.sqrt(var) + eps)
            elif name == "dr_grpo":
                out[i] = rewards[i] - mean
            else:
                out[i] = rewards[i] - (sum(rs) - rewards[i]) / (n - 1)
    return out


@pytest.mark.parametrize("name", ["grpo", "dr_grpo", "rloo"])
@pytest.mark.parametrize("std", ["bessel", "population"])
def test_vectorised_equals_loop_on_random_ragged_batches(name, std):
    rng = random.Random(1234)
    for trial in range(20):
        sizes = [rng.randint(1, 16) for _ in range(rng.randint(1, 12))]
        ids = rng.sample(range(100), len(sizes))  # non-dense group ids
        groups = [g for g, n in zip(ids, sizes) for _ in range(n)]
        rng.shuffle(groups)  # rows of a group need not be contiguous
        # binary rewards (ties, all-equal groups) in half the trials, continuous in the others
        rewards = [float(rng.random() < 0.5) if trial % 2 else rng.gauss(0, 2) for _ in groups]
        got = compute_advantages(name, torch.tensor(rewards), torch.tensor(groups), AdvantageOptions(std=std, eps=1e-6))
        want = _loop_reference(name, rewards, groups, std, 1e-6)
        assert got.tolist() == pytest.approx(want, abs=1e-4, rel=1e-5)


def test_unknown_estimator_lists_valid_names():
    with pytest.raises(ValueError, match="unknown advantage estimator 'ppo'; valid names: 'dr_grpo', 'grpo', 'rloo'"):
        compute_advantages("ppo", REWARDS, GROUPS)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(std="sample"), "AdvantageOptions.std must be 'bessel' or 'population', got 'sample'"),
        (dict(eps=-1.0), "AdvantageOptions.eps must be >= 0, got -1.0"),
        (dict(clip=0.0), "AdvantageOptions.clip must be > 0 or None, got 0.0"),
    ],
)
def test_options_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AdvantageOptions(**kwargs)


def test_shape_mismatch_is_rejected():
    with pytest.raises(ValueError, match=r"compute_advantages: rewards_B \(2,\) and group_B \(3,\)"):
        compute_advantages("grpo", torch.zeros(2), torch.zeros(3, dtype=torch.int64))


def test_advantage_metrics_by_hand():
    adv = compute_advantages("dr_grpo", REWARDS, GROUPS)
    m = advantage_metrics(REWARDS, GROUPS, adv)
    # no zero-std group with n > 1; 1 of 6 rollouts is a singleton; group size per rollout: 3,2,3,1,3,2 -> 14/6
    assert m["adv/zero_std_frac"] == 0.0
    assert m["adv/singleton_frac"] == pytest.approx(1 / 6)
    assert m["adv/group_size_mean"] == pytest.approx(14 / 6)
    # |A|: 2/3, 1, 1/3, 0, 1/3, 1 -> mean 10/3 / 6 = 0.555556; mean A = 0
    assert m["adv/abs_mean"] == pytest.approx(0.555556, abs=1e-6) and m["adv/mean"] == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("name", ["grpo", "dr_grpo", "rloo"])
@pytest.mark.parametrize("value", [1.1, 0.1, 0.7, 1.0, 0.0, -0.3, 2.2])
def test_equal_rewards_give_exactly_zero_advantage_at_every_group_size(name, value):
    # a float32 mean of equal values can miss them by an ulp (1.1 x 12 -> A = -0.106 for every response before)
    for n in range(2, 33):
        rewards_B = torch.full((n + 3,), value)
        rewards_B[n:] = torch.tensor([0.0, 1.0, 0.5])  # a second, informative group alongside
        group_B = torch.tensor([0] * n + [1] * 3)
        adv_B = compute_advantages(name, rewards_B, group_B, AdvantageOptions())
        assert torch.count_nonzero(adv_B[:n]) == 0 and torch.count_nonzero(adv_B[n:]) == 2
        assert advantage_metrics(rewards_B, group_B, adv_B)["adv/zero_std_frac"] == pytest.approx(n / (n + 3))
