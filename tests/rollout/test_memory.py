"""The vLLM KV-cache size rlbal chooses (rlbal.rollout.memory) and that the engine really reserves it."""

from __future__ import annotations

import os

import pytest

from rlbal.rollout.memory import FLOOR_GIB, GIB, kv_bytes_per_token, kv_cache_plan


def test_kv_bytes_per_token_of_the_tiny_model(tiny_path):
    from transformers import AutoConfig

    # 2 (K and V) x 2 layers x 1 KV head x 64 head dim x 4 bytes (fp32) = 1024
    assert kv_bytes_per_token(AutoConfig.from_pretrained(str(tiny_path)), dtype_bytes=4) == 1024


@pytest.mark.parametrize(
    "requested, tokens, per_token, cap, whole, gib",
    [
        (None, 64 * 8 * 288, 1024, 7.0, True, 1),  # the quickstart: 144 MiB -> the 1 GiB floor
        (None, 3 * GIB // 1024, 1024, 7.0, False, 3.0),  # exactly 3 GiB of tokens
        (None, 3 * GIB // 1024 + 1, 1024, 7.0, True, 4),  # one token more: whole GiB on CPU round up
        (None, 10 * GIB // 1024, 1024, 7.0, False, 7.0),  # 10 GiB wanted, the device share allows 7
        (None, 10 * GIB // 1024, 1024, 0.25, True, 1),  # a cap below the floor: the floor wins
        (None, None, 1024, 7.0, True, 1),  # an engine built outside a run: the floor
        (2.5, 10 * GIB // 1024, 1024, 1.0, False, 2.5),  # the recipe's size, neither derived nor capped
        (2.5, None, 1024, None, True, 3),
    ],
)
def test_kv_cache_plan(requested, tokens, per_token, cap, whole, gib):
    plan = kv_cache_plan(requested, tokens, per_token, cap_gib=cap, whole_gib=whole)
    assert plan.gib == gib and plan.bytes == int(gib * GIB)
    assert FLOOR_GIB == 1.0


@pytest.mark.vllm
def test_the_engine_reserves_the_planned_cache_on_cpu(vllm_session):
    """The session engine is built like a test builds it (no batch, no launch script): 1 GiB, set by the engine
    itself through VLLM_CPU_KVCACHE_SPACE and handed to vLLM, instead of vLLM's default share of the RAM."""
    if vllm_session.device != "cpu":
        pytest.skip("CPU check")
    assert vllm_session.kv_cache.gib == 1 and os.environ["VLLM_CPU_KVCACHE_SPACE"] == "1"
    assert vllm_session.llm.llm_engine.vllm_config.cache_config.kv_cache_memory_bytes == GIB
