"""vLLM rollout engine (the default): an offline `vllm.LLM` with a rollout count per prompt.

One `SamplingParams` per prompt carries its own `n` (prompts with count 0 are not sent), so one
`LLM.generate` call serves an uneven Rollout-GDRO allocation. vLLM is imported only when an engine
is built, so `import rlbal.rollout` stays light.

Logprobs. The engine is built with `logprobs_mode="processed_logprobs"` and each request asks for
`logprobs=0` (the sampled token only, flat container): the returned value is the log-probability of
the sampled token under the distribution actually sampled from, log_softmax(logits / T) after top-k
/ top-p truncation when those are on, the full vocabulary when off (top_k=0, top_p=1). vLLM's default
("raw_logprobs") would ignore the temperature. Greedy (T=0) gives log_softmax(logits). `score` uses
prompt logprobs, which vLLM never processes: T = 1, full vocabulary.

Weights. `update_weights` adds tied aliases (vLLM's CPU kernels keep a packed copy of a tied
output layer that goes stale unless `lm_head.weight` is pushed too), sends buckets through the
transport of `vllm_sync`, then resets the prefix cache, whose KV blocks were computed with the old
weights. Defaults by device: CPU in-process, eager, no sleep mode (unsupported); GPU keeps the same
code with `enable_sleep_mode=True` and, for a separate engine process, CUDA IPC.

Threads (CPU, in-process). vLLM's CPU kernels split every op over all OpenMP threads of the
process; when other processes busy the cores, each op waits for a descheduled thread (2 threads on
a loaded 2-core box: ~10x slower than 1). `cpu_threads=n` sets `torch.set_num_threads(n)` before
vLLM starts; it is process-wide (a learner in this process gets n too), and vLLM's CPU worker then
turns later `torch.set_num_threads` calls into no-ops. A separate engine process
(`multiprocess=True`) is pinned by vLLM itself to one core, the scheduler to another.

Memory. The KV cache is sized by rlbal (`kv_cache_gib`, else from `kv_tokens`, the tokens of one step's
sequences; see rlbal.rollout.memory), on CPU through VLLM_CPU_KVCACHE_SPACE, which this engine sets itself
before vLLM starts, so no launch script or caller has to; the chosen size is printed once.

Seeds. With `SamplingSpec.seed = s`, prompt i gets seed s + (completions before it) and vLLM gives
its j-th child seed + j, so every completion of a call has its own reproducible stream.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from rlbal.rollout.engine import FINISH_REASONS, Completion, GenerationResult, SamplingSpec, validate_request
from rlbal.rollout.memory import GIB, KVCachePlan, apply_plan, device_memory_bytes, kv_bytes_per_token, kv_cache_plan
from rlbal.rollout.vllm_sync import default_bucket_bytes, make_sender, resolve_transport, set_multiprocessing
from rlbal.rollout.weight_sync import Stopwatch, SyncStats, state_nbytes, sync_metrics, tied_aliases, with_tied_aliases


@dataclass(frozen=True)
class CheckpointFacts:
    """What the engine needs to know about a checkpoint before vLLM loads it (read without the weights).

    dtype: the dtype name it was saved in ("auto" resolves to it the way transformers does: vLLM's own
    "auto" may pick bf16 for an fp32 checkpoint on CPU, slow without native bf16 and ~4e-3 off the learner's
    logprobs); aliases: tied parameter names; num_params: parameter count; config: the HF config.
    """

    dtype: str
    aliases: dict[str, str]
    num_params: int
    config: Any


def checkpoint_facts(model_path: str | Path) -> CheckpointFacts:
    """The checkpoint's facts, from a weightless meta-device model."""
    config = AutoConfig.from_pretrained(str(model_path))
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    num_params = sum(p.numel() for p in model.parameters())
    dtype = str(config.dtype or torch.float32).removeprefix("torch.")
    return CheckpointFacts(dtype, tied_aliases(model), num_params, config)


def prompt_seeds(seed: int | None, counts: Sequence[int]) -> list[int | None]:
    """Per-prompt seeds leaving room for vLLM's per-child `seed + j`.

    >>> prompt_seeds(10, [2, 0, 3])
    [10, 12, 12]
    >>> prompt_seeds(None, [1, 1])
    [None, None]
    """
    if seed is None:
        return [None] * len(counts)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(int)
    return [seed + int(s) for s in starts]


class VLLMEngine:
    """`vllm.LLM` behind the `RolloutEngine` contract (see the module docstring)."""

    def __init__(
        self,
        model_path: str | Path,
        *,
        dtype: str = "auto",
        seed: int = 0,
        max_model_len: int | None = None,
        gpu_memory_utilization: float = 0.85,
        multiprocess: bool = False,
        transport: str = "auto",
        bucket_mb: float | None = None,
        enforce_eager: bool | None = None,
        enable_prefix_caching: bool = True,
        sleep_level: int = 1,
        cpu_threads: int | None = None,
        kv_cache_gib: float | None = None,
        kv_tokens: int | None = None,
        use_tqdm_on_load: bool = True,
        **llm_kwargs: Any,
    ) -> None:
        if bucket_mb is not None and bucket_mb <= 0:
            raise ValueError(f"VLLMEngine.bucket_mb must be > 0, got {bucket_mb}")
        if sleep_level not in (1, 2):
            raise ValueError(f"VLLMEngine.sleep_level must be 1 or 2, got {sleep_level}")
        if cpu_threads is not None and cpu_threads < 1:
            raise ValueError(f"VLLMEngine.cpu_threads must be >= 1, got {cpu_threads}")
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.transport = resolve_transport(transport, multiprocess=multiprocess, device=self.device)
        self.bucket_bytes = default_bucket_bytes(self.transport) if bucket_mb is None else int(bucket_mb * 2**20)
        self.sleep_level = sleep_level
        facts = checkpoint_facts(model_path)
        self.aliases = facts.aliases
        dtype = facts.dtype if dtype == "auto" else dtype
        self.kv_cache = self._kv_cache_plan(facts, dtype, kv_cache_gib, kv_tokens, gpu_memory_utilization)
        set_multiprocessing(multiprocess)
        if cpu_threads is not None:
            torch.set_num_threads(cpu_threads)  # before vLLM's CPU worker turns set_num_threads into a no-op
        from vllm import LLM

        kwargs: dict[str, Any] = dict(
            model=str(model_path),
            dtype=dtype,
            seed=seed,
            max_model_len=max_model_len,
            # eager on CPU: compiled graphs were no faster there and recompile at every start
            enforce_eager=self.device == "cpu" if enforce_eager is None else enforce_eager,
            enable_prefix_caching=enable_prefix_caching,
            logprobs_mode="processed_logprobs",
            use_tqdm_on_load=use_tqdm_on_load,
        )  # vLLM's weight-loading progress bar
        if self.device == "cuda":
            kwargs.update(gpu_memory_utilization=gpu_memory_utilization, enable_sleep_mode=True)
        else:
            # vLLM-CPU: a seeded request whose prefill is chunked fails ("CPU Generator does not use offset");
            # with whole-prompt prefills and a large token budget, per-request seeds work at any batch size.
            kwargs.update(enable_chunked_prefill=False, max_num_batched_tokens=max(65536, max_model_len or 0))
        kwargs.update(apply_plan(self.kv_cache, self.device))
        print(f"[rlbal] vLLM KV cache: {self.kv_cache.gib:g} GiB on {self.device} ({self.kv_cache.reason})", flush=True)
        if self.transport == "ipc":
            kwargs["weight_transfer_config"] = {"backend": "ipc"}
        self.llm = LLM(**kwargs, **llm_kwargs)
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_path))
        self.max_model_len = self.llm.llm_engine.model_config.max_model_len
        self._send = make_sender(self.transport, self.llm, self.bucket_bytes)
        self.last_sync: SyncStats | None = None

    def _kv_cache_plan(
        self, facts: CheckpointFacts, dtype: str, kv_cache_gib: float | None, kv_tokens: int | None, utilization: float
    ) -> KVCachePlan:
        """The KV-cache size (rlbal.rollout.memory): the cap is the device share minus the weights."""
        itemsize = torch.empty((), dtype=getattr(torch, dtype)).element_size()
        cap = (utilization * device_memory_bytes(self.device) - facts.num_params * itemsize) / GIB
        return kv_cache_plan(
            kv_cache_gib,
            kv_tokens,
            kv_bytes_per_token(facts.config, itemsize),
            cap_gib=max(cap, 0.0),
            whole_gib=self.device == "cpu",
        )

    # ------------------------------------------------------------------ generation

    def generate(
        self, prompt_token_ids: Sequence[Sequence[int]], counts: Sequence[int], sampling: SamplingSpec
    ) -> GenerationResult:
        validate_request(prompt_token_ids, counts, sampling, self.max_model_len)
        kept = [i for i, c in enumerate(counts) if c > 0]
        seeds = prompt_seeds(sampling.seed, counts)
        requests = [{"prompt_token_ids": list(prompt_token_ids[i])} for i in kept]
        params = [self._params(sampling, counts[i], seeds[i]) for i in kept]
        with Stopwatch() as sw:
            outs = self.llm.generate(requests, params, use_tqdm=False) if kept else []
            pairs = [(i, c) for i, out in zip(kept, outs) for c in out.outputs]
            # vLLM detokenizes only for stop strings (per token, in Python); otherwise one batched decode here
            texts = (
                [c.text for _, c in pairs]
                if sampling.stop
                else self.tokenizer.batch_decode([c.token_ids for _, c in pairs], skip_special_tokens=True)
            )
            completions = [_completion(i, c, text) for (i, c), text in zip(pairs, texts)]
        return GenerationResult(completions, [list(p) for p in prompt_token_ids], {"generate": sw.seconds})

    @staticmethod
    def _params(sampling: SamplingSpec, n: int, seed: int | None) -> Any:
        from vllm import SamplingParams

        return SamplingParams(
            n=n,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=sampling.top_k,
            max_tokens=sampling.max_new_tokens,
            stop=list(sampling.stop) or None,
            seed=seed,
            logprobs=0,
            flat_logprobs=True,
            include_stop_str_in_output=True,
            skip_special_tokens=True,
            detokenize=bool(sampling.stop),
        )

    def score(
        self, prompt_token_ids: Sequence[Sequence[int]], completion_token_ids: Sequence[Sequence[int]]
    ) -> list[list[float]]:
        """log p(completion token | prefix) under the engine's weights (T = 1, full vocabulary)."""
        from vllm import SamplingParams

        pairs = list(zip(prompt_token_ids, completion_token_ids, strict=True))
        params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0, flat_logprobs=True, detokenize=False)
        outs = self.llm.generate([{"prompt_token_ids": list(p) + list(c)} for p, c in pairs], params, use_tqdm=False)
        # prompt_logprobs[j] scores token j given tokens < j (none for j = 0): one entry per position.
        return [list(o.prompt_logprobs.logprobs[len(p) - 1 :]) for o, (p, _) in zip(outs, pairs)]

    # ------------------------------------------------------------------ weights and memory

    @torch.no_grad()
    def update_weights(self, state_dict: Mapping[str, torch.Tensor]) -> float:
        """Push (a subset of, whole layers at a time) the learner's parameters; returns seconds."""
        with Stopwatch() as sw:
            state = with_tied_aliases(state_dict, self.aliases)
            calls = self._send(self.llm, state, self.bucket_bytes)
            self.llm.reset_prefix_cache()  # cached KV blocks were computed with the old weights
        self.last_sync = SyncStats(sw.seconds, state_nbytes(state), calls)
        return sw.seconds

    def sleep(self) -> None:
        """GPU: offload weights (level 1) or drop them (level 2) and free the KV cache. CPU: no-op."""
        if self.device == "cuda":
            self.llm.sleep(level=self.sleep_level)

    def wake(self) -> None:
        if self.device == "cuda":
            self.llm.wake_up()

    def metrics(self) -> dict[str, float]:
        return sync_metrics(self.last_sync)

    def shutdown(self) -> None:
        """Stop a separate engine process now rather than at interpreter exit."""
        self.llm.llm_engine.engine_core.shutdown()


def _completion(prompt_index: int, out: Any, text: str) -> Completion:
    """One vLLM `CompletionOutput` -> `Completion` (flat logprobs: one entry per sampled token)."""
    if out.finish_reason not in FINISH_REASONS:
        raise ValueError(f"vLLM finished a completion with {out.finish_reason!r}; expected one of {FINISH_REASONS}")
    return Completion(prompt_index, list(out.token_ids), list(out.logprobs.logprobs), text, out.finish_reason)
