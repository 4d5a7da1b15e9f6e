"""The learner group: 2 Ray learner ranks in one gloo world update exactly like one local Learner.

Reference: rlbal's own single-process `Learner` on the same batch (the slow, obviously-correct path). A
rank's shard is token-balanced, micro-batches are tiny (several per rank, unequal counts), and there are
two optimizer updates per step, so sharding, equal micro-batch counts, the all-reduce and the global
normalisers are all exercised.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rlbal.learner.world import grad_buckets, token_balanced_shard


def test_token_balanced_shard_is_contiguous_complete_and_balanced():
    rng = np.random.default_rng(0)
    for _ in range(20):
        lengths = torch.as_tensor(rng.integers(3, 40, size=int(rng.integers(4, 30))))
        for world in (1, 2, 3):
            mine = [token_balanced_shard(lengths, world, r) for r in range(world)]
            assert torch.equal(torch.cat(mine), torch.arange(len(lengths)))  # contiguous, disjoint, complete
            share = float(lengths.sum()) / world
            for m in mine:  # each rank within one row's tokens of an equal share
                assert abs(float(lengths[m].sum()) - share) <= float(lengths.max()) + 1e-9


def test_grad_buckets_close_before_overflowing():
    ps = [torch.nn.Parameter(torch.zeros(n)) for n in (10, 10, 30, 2, 2)]  # 40, 40, 120, 8, 8 bytes
    assert grad_buckets(ps, bucket_bytes=80) == [[0, 1], [2], [3, 4]]  # 120 > 80: a bucket of its own


def learner_config(backend: str):
    from rlbal.config import load_config

    return load_config(
        None,
        [
            "model.path=tiny-sft",
            f"learner.backend={backend}",
            "learner.lr=5e-3",
            "learner.mini_batches=2",
            "learner.micro_batch_tokens=48",
            "run.max_steps=4",
            "algo.aggregation=seq_mean_token_mean",
        ],
    )


def start_group(cfg, world: int):
    from rlbal.ray.learner_group import LearnerGroup, form_world, learner_actor_class
    from rlbal.ray.records import RayStats

    actors = [learner_actor_class(num_cpus=0.5).remote(cfg, r, world) for r in range(world)]
    form_world(actors, timeout_s=180)
    return LearnerGroup(actors, RayStats())


@pytest.fixture(scope="module")
def batches(sft_path, ragged_batch):
    return [ragged_batch(sft_path, seed) for seed in (1, 2)]


@pytest.fixture(scope="module")
def torch_group(ray_session):
    """2 ranks with the plain backend, shared by this module (the last test kills one of its ranks)."""
    group = start_group(learner_config("torch"), world=2)
    yield group
    group.shutdown()


@pytest.mark.ray
@pytest.mark.parametrize(
    "backend", ["torch", pytest.param("accelerate", marks=[pytest.mark.deepspeed, pytest.mark.slow])]
)
def test_two_ranks_update_like_one_local_learner(ray_session, batches, backend, request):
    from rlbal.learner import make_learner
    from rlbal.rollout.weight_sync import from_numpy

    local = make_learner(learner_config("torch"))
    group = (
        request.getfixturevalue("torch_group") if backend == "torch" else start_group(learner_config(backend), world=2)
    )
    try:
        for batch in batches:
            want, got = local.update(batch), group.update(batch)
            for key, value in want.metrics.items():  # extrema (ratio_min/max) included: max-reduced over ranks
                assert got.metrics[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
            np.testing.assert_allclose(got.signal_B, want.signal_B, rtol=1e-4, atol=1e-6)
        assert want.metrics["learner/grad_norm"] > 0.01  # the updates really moved the weights
        weights = group.export_weights()
        assert weights.version == 2 and weights.put_s > 0
        remote = from_numpy(ray_session.get(weights.ref))
        ref_state = local.export_weights()
        assert weights.nbytes == sum(t.numel() * 4 for t in remote.values())
        # Summation order differs (shards, all-reduce), and AdamW turns relative errors of near-zero gradients
        # into steps of up to lr: measured max 2e-5, mean <= 2e-7 after 4 updates at lr 5e-3. A missing all-reduce
        # (a rank training on its shard alone) moves weights by ~lr = 5e-3.
        for name, t in ref_state.items():
            diff = (remote[name] - t).abs()
            assert float(diff.max()) < 1e-4 and float(diff.mean()) < 1e-6, name
        assert "ray/actor_restarts" in got.metrics  # the orchestrator counters ride along
    finally:
        if backend != "torch":
            group.shutdown()


@pytest.mark.ray
def test_a_dead_rank_stops_the_group_and_kills_the_others(ray_session, batches, torch_group):
    from rlbal.ray.learner_group import LearnerGroupError

    group = torch_group
    ray_session.kill(group.actors[1], no_restart=True)
    with pytest.raises(LearnerGroupError, match=r"learner rank 1 died during update: .* run.resume=auto"):
        group.update(batches[0])
    with pytest.raises(ray_session.exceptions.RayActorError):  # rank 0 was killed too (not left in a collective)
        ray_session.get(group.actors[0].ping.remote(), timeout=30)
