"""What only the vLLM engine has: bucketed reload calls, transports, the multi-process engine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rlbal.rollout.vllm_engine import checkpoint_facts, prompt_seeds
from rlbal.rollout.vllm_sync import resolve_transport

PROMPT, COMPLETION = [9, 10, 11], [100 + i for i in range(12)]


def perturb(model: torch.nn.Module, seed: int, scale: float = 0.05) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)


def test_checkpoint_facts_of_the_tiny_model(tiny_path):
    facts = checkpoint_facts(tiny_path)
    assert (facts.dtype, facts.aliases) == ("float32", {"lm_head.weight": "model.embed_tokens.weight"})
    # embeddings 512 x 128 (tied with the output layer) + per layer: q, o 128x128 (2 heads of 64); k, v 64x128
    # (1 KV head); gate, up, down 128x256 each; two 128-wide norms; + the final norm = 361,088
    per_layer = 2 * 128 * 128 + 2 * 64 * 128 + 3 * 128 * 256 + 2 * 128
    assert facts.num_params == 512 * 128 + 2 * per_layer + 128 == 361_088


def test_seeds_leave_room_for_every_child():
    # counts 3, 0, 2: prompt 0 children 5, 6, 7; prompt 2 children 8, 9 (vLLM adds the child index)
    assert prompt_seeds(5, [3, 0, 2]) == [5, 8, 8]


@pytest.mark.parametrize(
    "name, multiprocess, device, message",
    [
        ("iterator", True, "cpu", "needs an in-process engine"),
        ("ipc", False, "cpu", "needs CUDA, engine device is 'cpu'"),
        ("nccl", False, "cuda", "unknown weight transport 'nccl'; valid: ['auto', 'iterator', 'shm_file', 'ipc']"),
    ],
)
def test_transports_that_cannot_work_are_refused(name, multiprocess, device, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        resolve_transport(name, multiprocess=multiprocess, device=device)


@pytest.mark.vllm
def test_one_reload_call_per_layer_group_still_matches_the_trainer(vllm_session, trainer, base_state, ref_logprobs):
    perturb(trainer, seed=1)
    saved = vllm_session.bucket_bytes
    vllm_session.bucket_bytes = 1  # smallest buckets: each layer group in its own reload call
    try:
        vllm_session.update_weights(trainer.state_dict())
    finally:
        vllm_session.bucket_bytes = saved
    # groups: embed_tokens, layers.0, layers.1, norm, lm_head
    assert vllm_session.last_sync.buckets == 5
    got = vllm_session.score([PROMPT], [COMPLETION])[0]
    np.testing.assert_allclose(got, ref_logprobs(trainer, PROMPT, COMPLETION).numpy(), atol=1e-4)
    vllm_session.update_weights(base_state)


@pytest.mark.vllm
@pytest.mark.slow
def test_multiprocess_engine_takes_weights_through_shm_files(tiny_path, trainer, ref_logprobs):
    pytest.importorskip("vllm")
    from rlbal.rollout import make_engine

    engine = make_engine("vllm", tiny_path, multiprocess=True, bucket_mb=1.0)
    try:
        assert engine.transport == "shm_file"
        np.testing.assert_allclose(
            engine.score([PROMPT], [COMPLETION])[0], ref_logprobs(trainer, PROMPT, COMPLETION).numpy(), atol=1e-4
        )
        perturb(trainer, seed=2)
        engine.update_weights({k: v for k, v in trainer.state_dict().items() if k != "lm_head.weight"})
        # 1 MiB buckets, fp32: embed 512x128 = 256 KiB; a layer = q 64 + k 32 + v 32 + o 64 + gate/up/down
        # 3 x 128 + norms 1 = 577 KiB: [embed + layer 0 = 833 KiB] [layer 1 + norm + lm_head alias = 833.5 KiB]
        assert engine.last_sync.buckets == 2
        np.testing.assert_allclose(
            engine.score([PROMPT], [COMPLETION])[0], ref_logprobs(trainer, PROMPT, COMPLETION).numpy(), atol=1e-4
        )
        assert not list(Path("/dev/shm").glob("rlbal-weights-*"))  # bucket files removed
    finally:
        engine.shutdown()


@pytest.mark.vllm
def test_weight_source_for_the_gpu_ipc_path_describes_what_it_yields():
    pytest.importorskip("vllm")
    from vllm.distributed.weight_transfer.base import ParamMeta

    from rlbal.rollout.vllm_sync import _state_source

    source = _state_source()
    source.state = {"a.weight": torch.zeros(2, 3), "b.bias": torch.ones(4, dtype=torch.bfloat16)}
    assert source.metadata() == [
        ParamMeta("a.weight", torch.float32, (2, 3)),
        ParamMeta("b.bias", torch.bfloat16, (4,)),
    ]
    assert [name for name, _ in source] == ["a.weight", "b.bias"]
    assert [name for name, _ in source] == ["a.weight", "b.bias"]  # re-iterable: a fresh pass each round


@pytest.mark.parametrize(
    "option, message",
    [
        (dict(bucket_mb=0), "VLLMEngine.bucket_mb must be > 0, got 0"),
        (dict(sleep_level=3), "VLLMEngine.sleep_level must be 1 or 2, got 3"),
        (dict(cpu_threads=0), "VLLMEngine.cpu_threads must be >= 1, got 0"),
        (dict(transport="iterator", multiprocess=True), "needs an in-process engine"),
    ],
)
def test_bad_options_fail_before_vllm_starts(tiny_path, option, message):
    from rlbal.rollout.vllm_engine import VLLMEngine

    with pytest.raises(ValueError, match=message):
        VLLMEngine(tiny_path, **option)
