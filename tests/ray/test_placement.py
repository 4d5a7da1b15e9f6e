"""Placement plans, prompt splits and chunk seeds (pure), and the loud start-up waits (real Ray)."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest

from rlbal.ray.placement import PlacementPlan, RayStartupError, chunk_seeds, plan_placement, split_prompts
from rlbal.rollout.vllm_engine import prompt_seeds


def test_colocated_plan_puts_one_rollout_and_one_learner_per_bundle():
    plan = plan_placement(3, 2, "colocated", cpus_per_actor=0.5, gpus_per_actor=0.25)
    # bundles 0, 1 hold a rollout actor and a learner rank (2 x 0.5 CPU, 2 x 0.25 GPU); bundle 2 one rollout actor.
    assert plan.bundles == ({"CPU": 1.0, "GPU": 0.5}, {"CPU": 1.0, "GPU": 0.5}, {"CPU": 0.5, "GPU": 0.25})
    assert plan.rollout_bundle == (0, 1, 2) and plan.learner_bundle == (0, 1)
    assert plan.total() == {"CPU": 2.5, "GPU": 1.25}


def test_disaggregated_plan_gives_every_actor_its_own_bundle():
    plan = plan_placement(2, 3, "disaggregated", cpus_per_actor=1.0)
    assert plan.bundles == ({"CPU": 1.0},) * 5  # no GPU key when gpus_per_actor = 0
    assert plan.rollout_bundle == (0, 1) and plan.learner_bundle == (2, 3, 4)


@pytest.mark.parametrize(
    "args,match",
    [
        ((2, 2, "mixed", 0.5), r"unknown placement 'mixed'; valid: \['colocated', 'disaggregated'\]"),
        ((0, 2, "colocated", 0.5), "rollout_actors=0"),
        ((1, 1, "colocated", 0.0), "cpus_per_actor=0.0"),
    ],
)
def test_plan_rejects_bad_settings_naming_them(args, match):
    with pytest.raises(ValueError, match=match):
        plan_placement(*args)


def test_plan_rejects_actor_outside_its_bundles():
    with pytest.raises(ValueError, match=r"outside 0..0"):
        PlacementPlan(({"CPU": 1.0},), rollout_bundle=(0,), learner_bundle=(1,))


def test_split_examples_by_hand():
    # completions before each position: 0 2 9 12 14; targets 14/3 = 4.67 -> 2 (|2-4.67| < |9-4.67|), 9.33 -> 9
    assert split_prompts([2, 7, 3, 2], 3) == [(0, 1), (1, 2), (2, 4)]
    assert split_prompts([5, 0, 0, 5], 2) == [(0, 1), (1, 4)]  # target 5: positions 1, 2, 3 tie, the first wins
    assert split_prompts([], 2) == [(0, 0), (0, 0)]
    assert split_prompts([3, 3], 4) == [(0, 0), (0, 1), (1, 1), (1, 2)]  # targets 1.5 -> 0, 3 -> 1, 4.5 -> 1


def brute_force_cost(counts: list[int], k: int) -> float:
    """Smallest sum over boundaries of |completions before the boundary - j * total / k|, over every monotone
    choice of boundaries (the objective split_prompts optimises, computed by enumeration)."""
    before = np.concatenate([[0], np.cumsum(counts)])
    targets = before[-1] * np.arange(1, k) / k
    best = float("inf")
    for cuts in itertools.combinations_with_replacement(range(len(counts) + 1), k - 1):
        best = min(best, float(np.abs(before[list(cuts)] - targets).sum()))
    return best


@pytest.mark.parametrize("seed", range(40))
def test_split_is_contiguous_and_as_balanced_as_brute_force(seed):
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 9, size=int(rng.integers(1, 8))).tolist()
    k = int(rng.integers(1, 5))
    chunks = split_prompts(counts, k)
    assert len(chunks) == k and chunks[0][0] == 0 and chunks[-1][1] == len(counts)
    assert [b for _, b in chunks[:-1]] == [a for a, _ in chunks[1:]] and all(a <= b for a, b in chunks)
    before = np.concatenate([[0], np.cumsum(counts)])
    targets = before[-1] * np.arange(1, k) / k
    cost = float(np.abs(before[[b for _, b in chunks[:-1]]] - targets).sum())
    assert cost == pytest.approx(brute_force_cost(counts, k))


@pytest.mark.parametrize("seed", range(20))
def test_chunk_seeds_reproduce_one_engines_vllm_seed_per_prompt(seed):
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 6, size=int(rng.integers(1, 12))).tolist()
    chunks = split_prompts(counts, int(rng.integers(1, 4)))
    whole = prompt_seeds(1000, counts)  # what one engine gives prompt i for the whole call
    for (a, b), s in zip(chunks, chunk_seeds(1000, counts, chunks)):
        assert prompt_seeds(s, counts[a:b]) == whole[a:b]  # what the actor owning the chunk gives the same prompts


@pytest.mark.ray
def test_placement_group_that_cannot_fit_fails_loudly_within_the_timeout(ray_session):
    from rlbal.ray.placement import create_placement_group

    plan = plan_placement(1, 1, "disaggregated", cpus_per_actor=64.0)
    t0 = time.monotonic()
    with pytest.raises(RayStartupError, match=r"placement group still pending after 1.5s .* needs \{'CPU': 128.0\}"):
        create_placement_group(plan, timeout_s=1.5)
    assert time.monotonic() - t0 < 10.0
    from ray.util.placement_group import placement_group_table

    ours = {0: {"CPU": 64.0}, 1: {"CPU": 64.0}}
    states = [g["state"] for g in placement_group_table().values() if g["bundles"] == ours]
    assert states == ["REMOVED"]  # not left PENDING: it would grab the resources the moment they free up


@pytest.mark.ray
def test_wait_all_names_the_actors_that_are_not_up(ray_session):
    from rlbal.ray.placement import wait_all

    @ray_session.remote(num_cpus=0)
    def nap(seconds):
        time.sleep(seconds)
        return seconds

    assert wait_all([nap.remote(0.0), nap.remote(0.1)], 30.0, "naps") == [0.0, 0.1]
    with pytest.raises(RayStartupError, match=r"naps: 1 of 2 not up after 1s .* indices \[1\]"):
        wait_all([nap.remote(0.0), nap.remote(5.0)], 1.0, "naps")
