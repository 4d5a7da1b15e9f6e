"""`make_engine(kind, model_path, ...)`: build a rollout engine by name from the engine registry.

    engine = make_engine("vllm", tiny_model(), seed=0)            # the default engine
    engine = make_engine("hf", tiny_model(), max_batch_tokens=8192)

Engine modules are imported only when their kind is built (vLLM, transformers are heavy). Every engine takes
`dtype`, `seed` and `max_model_len`; of the other options a recipe sets (RECIPE_OPTIONS, see
`rlbal.assemble.engine_options`) an engine gets those its registry entry declares, so one recipe runs on any
engine. Further keyword options go to the engine's constructor (see `VLLMEngine`, `HFEngine`).

`register_engine(name, build, options)` adds a kind that recipes can then name as `rollout.engine` (the config
checks the name against this registry when it is validated).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlbal.registry import Registry
from rlbal.rollout.engine import RolloutEngine

EngineBuilder = Callable[..., RolloutEngine]

# Options derived from a recipe that only some engines take (vLLM's memory plan, compilation, load bar).
RECIPE_OPTIONS = ("gpu_memory_utilization", "enforce_eager", "use_tqdm_on_load", "kv_cache_gib", "kv_tokens")


@dataclass(frozen=True)
class EngineKind:
    """Registry entry: how to build the engine and which of RECIPE_OPTIONS it takes."""

    build: EngineBuilder  # (model_path, *, dtype, seed, max_model_len, **options) -> engine
    options: tuple[str, ...] = ()


def _vllm(model_path: str | Path, **kwargs: Any) -> RolloutEngine:
    from rlbal.rollout.vllm_engine import VLLMEngine

    return VLLMEngine(model_path, **kwargs)


def _hf(model_path: str | Path, **kwargs: Any) -> RolloutEngine:
    from rlbal.rollout.hf_engine import HFEngine

    return HFEngine(model_path, **kwargs)  # transformers allocates as it goes: no memory options


ENGINES: Registry[EngineKind] = Registry("engine kind")
ENGINES.add("vllm", EngineKind(_vllm, options=RECIPE_OPTIONS))
ENGINES.add("hf", EngineKind(_hf))


def register_engine(name: str, build: EngineBuilder, options: tuple[str, ...] = ()) -> None:
    """Add an engine kind (a name already taken raises); `options`: the RECIPE_OPTIONS its constructor takes."""
    unknown = set(options) - set(RECIPE_OPTIONS)
    if unknown:
        raise ValueError(
            f"register_engine({name!r}): unknown recipe options {sorted(unknown)}; known: {RECIPE_OPTIONS}"
        )
    ENGINES.add(name, EngineKind(build, tuple(options)))


def engine_kwargs(kind: str, opts: Mapping[str, Any]) -> dict[str, Any]:
    """`opts` without the RECIPE_OPTIONS that engine `kind` does not take."""
    takes = ENGINES.get(kind).options
    return {k: v for k, v in opts.items() if k not in RECIPE_OPTIONS or k in takes}


def make_engine(
    kind: str,
    model_path: str | Path,
    *,
    dtype: str = "auto",
    seed: int = 0,
    max_model_len: int | None = None,
    gpu_memory_utilization: float | None = None,
    **opts: Any,
) -> RolloutEngine:
    """An engine of `kind` ("vllm" or "hf", or a registered name) for the HF folder `model_path`.

    >>> make_engine("sglang", "/nowhere")
    Traceback (most recent call last):
    ...
    ValueError: unknown engine kind 'sglang'; valid names: 'hf', 'vllm'
    """
    entry = ENGINES.get(kind)
    if gpu_memory_utilization is not None:
        opts["gpu_memory_utilization"] = gpu_memory_utilization
    return entry.build(model_path, dtype=dtype, seed=seed, max_model_len=max_model_len, **engine_kwargs(kind, opts))
