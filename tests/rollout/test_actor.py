"""The rollout actor: in-process (no Ray) and as a real Ray actor on a local 2-CPU cluster."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from rlbal.rollout import SamplingSpec
from rlbal.rollout.actor import ActorReply, RolloutActor, remote_rollout_actor
from rlbal.rollout.weight_sync import to_numpy

PROMPTS, COUNTS = [[5, 6, 7, 8], [9, 10, 11], [12, 13]], [2, 0, 3]
COMPLETION = [100 + i for i in range(10)]


def perturbed_state(model: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    return model.state_dict()


def test_in_process_actor_delegates_and_keeps_one_incarnation(tiny_path, trainer, ref_logprobs):
    actor = RolloutActor("hf", tiny_path, seed=0)
    first = actor.generate(PROMPTS, COUNTS, SamplingSpec(max_new_tokens=6, seed=0))
    assert isinstance(first, ActorReply) and first.value.counts() == COUNTS
    reply = actor.update_weights(to_numpy(perturbed_state(trainer, seed=0)))  # numpy payload, as from Ray
    assert reply.value >= 0
    score = actor.score([PROMPTS[0]], [COMPLETION])
    np.testing.assert_allclose(score.value[0], ref_logprobs(trainer, PROMPTS[0], COMPLETION).numpy(), atol=1e-4)
    assert len({first.incarnation, reply.incarnation, score.incarnation, actor.ping().incarnation}) == 1
    assert len(first.incarnation) == 32  # uuid4 hex


@pytest.fixture
def ray_cluster(ray_session):
    return ray_session


def ping_until_restarted(ray, actor, old: str, timeout_s: float = 180.0) -> ActorReply:
    """`ray.kill` returns before the actor dies: keep pinging until a new incarnation answers
    (a restarting actor refuses calls meanwhile)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            reply = ray.get(actor.ping.remote(), timeout=timeout_s)
        except ray.exceptions.RayActorError:
            reply = None
        if reply is not None and reply.incarnation != old:
            return reply
        time.sleep(0.5)
    raise TimeoutError(f"actor did not come back within {timeout_s} s")


@pytest.mark.ray
@pytest.mark.slow
def test_ray_actor_serves_generation_takes_numpy_weights_and_reveals_restarts(
    ray_cluster, tiny_path, trainer, ref_logprobs
):
    ray = ray_cluster
    base = ref_logprobs(trainer, PROMPTS[0], COMPLETION).numpy()
    actor = remote_rollout_actor(num_cpus=1, max_restarts=1, max_task_retries=0).remote("hf", str(tiny_path), seed=0)
    gen = ray.get(actor.generate.remote(PROMPTS, COUNTS, SamplingSpec(max_new_tokens=6, seed=0)))
    assert gen.value.counts() == COUNTS

    weights_ref = ray.put(to_numpy(perturbed_state(trainer, seed=1)))  # zero-copy numpy in the object store
    upd = ray.get(actor.update_weights.remote(weights_ref))
    score = ray.get(actor.score.remote([PROMPTS[0]], [COMPLETION]))
    np.testing.assert_allclose(score.value[0], ref_logprobs(trainer, PROMPTS[0], COMPLETION).numpy(), atol=1e-4)
    assert gen.incarnation == upd.incarnation == score.incarnation

    ray.kill(actor, no_restart=False)  # a crash: Ray restarts it from the checkpoint, our weights are gone
    restarted = ping_until_restarted(ray, actor, old=gen.incarnation)
    assert len(restarted.incarnation) == 32
    again = ray.get(actor.score.remote([PROMPTS[0]], [COMPLETION]))
    np.testing.assert_allclose(again.value[0], base, atol=1e-4)  # hence: re-send weights on a new incarnation
