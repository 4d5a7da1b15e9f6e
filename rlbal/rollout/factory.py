"""`make_engine(kind, model_path, ...)`: build a rollout engine by name from a closed registry.

    engine = make_engine("vllm", tiny_model(), seed=0)            # the default engine
    engine = make_engine("hf", tiny_model(), max_batch_tokens=8192)

Engine modules are imported only when their kind is built (vLLM, transformers are heavy). Extra
keyword options go to the engine's constructor (see `VLLMEngine`, `HFEngine` for the full lists).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from rlbal.rollout.engine import RolloutEngine

EngineBuilder = Callable[..., RolloutEngine]


def _vllm(model_path: str | Path, **kwargs: Any) -> RolloutEngine:
    from rlbal.rollout.vllm_engine import VLLMEngine

    return VLLMEngine(model_path, **kwargs)


VLLM_MEMORY_OPTIONS = ("gpu_memory_utilization", "kv_cache_gib", "kv_tokens")


def _hf(model_path: str | Path, **kwargs: Any) -> RolloutEngine:
    from rlbal.rollout.hf_engine import HFEngine

    for key in VLLM_MEMORY_OPTIONS:  # transformers allocates as it goes; these knobs are vLLM's
        kwargs.pop(key, None)
    return HFEngine(model_path, **kwargs)


ENGINES: dict[str, EngineBuilder] = {"vllm": _vllm, "hf": _hf}


def register_engine(name: str, builder: EngineBuilder) -> None:
    """Add an engine kind; a name already taken raises."""
    if name in ENGINES:
        raise ValueError(f"engine kind {name!r} is already registered; taken: {sorted(ENGINES)}")
    ENGINES[name] = builder


def make_engine(kind: str, model_path: str | Path, *, dtype: str = "auto", seed: int = 0,
                max_model_len: int | None = None, gpu_memory_utilization: float | None = None,
                **opts: Any) -> RolloutEngine:
    """An engine of `kind` ("vllm" or "hf", or a registered name) for the HF folder `model_path`.

    >>> make_engine("sglang", "/nowhere")
    Traceback (most recent call last):
    ...
    ValueError: unknown engine kind 'sglang'; valid: ['hf', 'vllm']
    """
    if kind not in ENGINES:
        raise ValueError(f"unknown engine kind {kind!r}; valid: {sorted(ENGINES)}")
    if gpu_memory_utilization is not None:
        opts["gpu_memory_utilization"] = gpu_memory_utilization
    return ENGINES[kind](model_path, dtype=dtype, seed=seed, max_model_len=max_model_len, **opts)
