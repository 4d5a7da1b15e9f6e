"""The CUDA paths of the learner and the transformers engine: device moves, bf16 weights, gradient checkpointing,
generation and weight sync on the GPU, each against the CPU fp32 reference. Run by benchmarks/gpu/run.sh."""

from __future__ import annotations

import pytest
import torch

from rlbal.config import load_config
from rlbal.learner import make_learner
from rlbal.learner.backends import TorchBackend
from rlbal.learner.model import load_causal_lm, token_logprobs
from rlbal.rollout import SamplingSpec
from rlbal.rollout.hf_engine import HFEngine
from tests.gpu.conftest import DEVICE, needs_device

pytestmark = [pytest.mark.gpu, needs_device]
PROMPTS, COUNTS = [[5, 6, 7, 8], [9, 10]], [3, 2]


def config(model_path, *extra: str):
    return load_config(
        None,
        [
            f"model.path={model_path}",
            "learner.lr=1e-3",
            "run.max_steps=4",
            "algo.aggregation=seq_mean_token_mean",
            *extra,
        ],
    )


@pytest.fixture(scope="module")
def batch(gpu_model_path, ragged_batch):
    return ragged_batch(gpu_model_path, 1)


def test_learner_update_on_the_device_gives_the_cpu_numbers(gpu_model_path, batch):
    cpu = make_learner(config(gpu_model_path), TorchBackend("cpu"))
    dev = make_learner(config(gpu_model_path), TorchBackend(DEVICE))
    assert {p.device.type for p in dev.model.parameters()} == {torch.device(DEVICE).type}
    a, b = cpu.update(batch), dev.update(batch)  # the batch is moved to the learner's device inside
    assert set(a.metrics) == set(b.metrics)
    for key, value in a.metrics.items():  # loss terms, ratios, entropy, the pre-clip gradient norm
        assert b.metrics[key] == pytest.approx(value, rel=1e-3, abs=1e-6), key
    assert a.metrics["learner/grad_norm"] > 0
    exported = dev.export_weights()
    assert {v.device.type for v in exported.values()} == {torch.device(DEVICE).type}


def test_shared_prompt_forward_on_the_device_updates_like_one_forward_per_row(gpu_model_path, batch):
    rows = make_learner(config(gpu_model_path, "learner.share_prompt_forward=false"), TorchBackend(DEVICE))
    shared = make_learner(config(gpu_model_path, "learner.share_prompt_forward=true"), TorchBackend(DEVICE))
    assert shared.share_prompt and not rows.share_prompt
    a, b = rows.update(batch), shared.update(batch)
    for key, value in a.metrics.items():
        assert b.metrics[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
    for k, v in rows.export_weights().items():
        torch.testing.assert_close(shared.export_weights()[k], v, rtol=0, atol=1e-4)


def test_bf16_with_gradient_checkpointing_updates_like_without(gpu_model_path, batch):
    # the same forward on both sides (gradient checkpointing turns the shared prompt forward off)
    plain = make_learner(
        config(gpu_model_path, "model.dtype=bfloat16", "learner.share_prompt_forward=false"), TorchBackend(DEVICE)
    )
    ckpt = make_learner(
        config(gpu_model_path, "model.dtype=bfloat16", "model.gradient_checkpointing=true"), TorchBackend(DEVICE)
    )
    assert ckpt.model.is_gradient_checkpointing and not plain.model.is_gradient_checkpointing
    assert {p.dtype for p in ckpt.model.parameters()} == {torch.bfloat16}
    before = {k: v.clone() for k, v in ckpt.export_weights().items()}
    a, b = plain.update(batch), ckpt.update(batch)
    # recomputing activations in the backward pass changes no number: same kernels, same order
    for key, value in a.metrics.items():
        assert b.metrics[key] == pytest.approx(value, rel=1e-2, abs=1e-4), key
    fp32 = make_learner(config(gpu_model_path), TorchBackend(DEVICE)).update(batch)
    assert b.metrics["learner/grad_norm"] == pytest.approx(fp32.metrics["learner/grad_norm"], rel=0.05)
    after = ckpt.export_weights()
    # every matrix moved; the RMSNorm weights (all 1.0) cannot: bf16's spacing at 1.0 is 2^-7, an AdamW step of
    # lr = 1e-3 rounds back to 1.0 (pure-bf16 weights lose updates smaller than their spacing)
    assert all(not torch.equal(after[k], v) for k, v in before.items() if v.dim() == 2)
    assert all(torch.equal(after[k], v) for k, v in before.items() if v.dim() == 1)


def test_generation_on_the_device_reports_the_policy_logprobs(gpu_model_path):
    engine = HFEngine(gpu_model_path, dtype="float32", device=DEVICE, seed=0)
    assert engine.model.device.type == torch.device(DEVICE).type
    result = engine.generate(PROMPTS, COUNTS, SamplingSpec(max_new_tokens=8, seed=1))
    assert [c.prompt_index for c in result.completions] == [0, 0, 0, 1, 1]
    reference = load_causal_lm(gpu_model_path).eval()  # fp32 on the CPU
    for c in result.completions:
        ids = torch.tensor([PROMPTS[c.prompt_index] + c.token_ids])
        with torch.no_grad():
            want = token_logprobs(reference, ids, torch.ones_like(ids))[0, len(PROMPTS[c.prompt_index]) :]
        torch.testing.assert_close(torch.tensor(c.logprobs), want, atol=1e-4, rtol=0)


@pytest.mark.parametrize("dtype, atol", [("float32", 1e-4), ("bfloat16", 0.1)])
def test_weights_synced_on_the_device_score_like_the_learner(gpu_model_path, batch, dtype, atol):
    learner = make_learner(config(gpu_model_path, f"model.dtype={dtype}"), TorchBackend(DEVICE))
    engine = HFEngine(gpu_model_path, dtype=dtype, device=DEVICE, seed=0)
    learner.update(batch)
    engine.update_weights(learner.export_weights())
    completion = list(range(20, 32))
    got = torch.tensor(engine.score([PROMPTS[0]], [completion])[0])
    ids = torch.tensor([PROMPTS[0] + completion], device=learner.device)
    with torch.no_grad():
        want = token_logprobs(learner.model.eval(), ids, torch.ones_like(ids))[0, len(PROMPTS[0]) :].float().cpu()
    # bf16: engine and learner round the same weights alike; what differs is padding and kernel choice
    torch.testing.assert_close(got, want, atol=atol, rtol=0)
