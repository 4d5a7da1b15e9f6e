"""The algo path on a CUDA device gives the CPU numbers (no tensor is left on the wrong device)."""

import dataclasses

import pytest
import torch

from rlbal.algo import (
    AdvantageOptions,
    AggregationContext,
    LossInputs,
    LossOptions,
    aggregate,
    bin_contributions,
    compute_advantages,
    policy_loss,
)
from rlbal.batch import RolloutBatch
from rlbal.rollout.engine import Completion


def _batch() -> RolloutBatch:
    g = torch.Generator().manual_seed(0)
    comps = []
    for i in range(12):
        n = 1 + i % 5
        comps.append(
            Completion(
                i % 4,
                torch.randint(1, 30, (n,), generator=g).tolist(),
                (-torch.rand(n, generator=g)).tolist(),
                "",
                "stop",
            )
        )
    b = RolloutBatch.from_generation(
        [[1, 2], [3], [4, 5, 6], [7]],
        comps,
        [10, 11, 12, 13],
        [0, 1, 1, 2],
        [1.0, 0.5, 2.0, 1.0],
        torch.rand(12, generator=g).tolist(),
        pad_id=0,
    )
    noise = torch.randn(b.input_ids_BL.shape, generator=g) * 0.6 * b.completion_mask_BL
    return dataclasses.replace(
        b,
        old_logp_BL=b.engine_logp_BL + noise,
        ref_logp_BL=b.engine_logp_BL - noise,
        advantages_B=compute_advantages("grpo", b.rewards_B, b.group_B, AdvantageOptions()),
    )


def _run(batch: RolloutBatch, loss_name: str, bounds):
    logp_BL = (batch.engine_logp_BL + 0.1 * batch.completion_mask_BL).requires_grad_(True)
    logits_BLV = torch.zeros(*batch.input_ids_BL.shape, 7, device=batch.input_ids_BL.device)
    opts = LossOptions(kl_coef=0.1, is_mode="sequence_mask", is_cap=3.0, is_floor=0.3)
    out = policy_loss(loss_name, LossInputs.from_batch(batch, logp_BL, logits_BLV), opts, bounds=bounds)
    ctx = AggregationContext.from_batch(batch, "group_balanced", group_by="bin", unit="seq", shares=[0.2, 0.3, 0.5])
    loss = aggregate(out.loss_BL, batch.completion_mask_BL, ctx, ctx.key_of(batch))
    loss.backward()
    contrib = bin_contributions(out.loss_BL, batch.completion_mask_BL, ctx, batch.bin_B, 3, ctx.key_of(batch))
    return loss.item(), logp_BL.grad.cpu(), out.metrics, contrib.cpu()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize(
    "loss_name, bounds", [("ppo_clip", None), ("dual_clip", None), ("gspo", None), ("bapo", (0.7, 1.6))]
)
def test_cuda_matches_cpu(loss_name, bounds):
    cpu = _batch()
    want = _run(cpu, loss_name, bounds)
    got = _run(cpu.to("cuda"), loss_name, bounds)
    assert got[0] == pytest.approx(want[0], rel=1e-5, abs=1e-6)
    assert torch.allclose(got[1], want[1], atol=1e-6)
    assert got[2] == pytest.approx(want[2], rel=1e-5, abs=1e-6)
    assert torch.allclose(got[3], want[3], atol=1e-6)
