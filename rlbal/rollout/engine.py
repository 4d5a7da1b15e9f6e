"""The rollout-engine contract: what every engine (vLLM, transformers, a Ray actor around either) takes and returns.

An engine generates, for each prompt of a list, *its own* number of completions (Rollout-GDRO gives
different prompts different counts), with one shared set of sampling settings. Outputs are ragged: one
`Completion` per sampled response, each pointing back at its prompt by position.

    result = engine.generate(prompt_token_ids, counts=[2, 7, 3], sampling=SamplingSpec(max_new_tokens=64))
    assert [sum(c.prompt_index == i for c in result.completions) for i in range(3)] == [2, 7, 3]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

FINISH_REASONS = ("stop", "length")


@dataclass(frozen=True)
class SamplingSpec:
    """Sampling settings shared by every prompt of one `generate` call."""

    max_new_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0 = off
    stop: tuple[str, ...] = ()
    seed: int | None = None  # None = engine's own stream; an int makes the call reproducible

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"SamplingSpec.max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"SamplingSpec.temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"SamplingSpec.top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"SamplingSpec.top_k must be >= 0, got {self.top_k}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass
class Completion:
    """One sampled response.

    prompt_index: position of its prompt in the `generate` call's prompt list.
    token_ids:    (T,) sampled tokens, excluding the prompt; includes the EOS token if one was sampled.
    logprobs:     (T,) log-probability of each sampled token under the distribution it was sampled from:
                  temperature-scaled, and truncated by top-k / top-p when those are on (the behaviour
                  policy of importance ratios; with top_k=0, top_p=1 it is the full-vocabulary softmax
                  of logits / T that the learner recomputes).
    text:         decoded `token_ids` (special tokens skipped).
    finish_reason: "stop" (EOS or a stop string) or "length" (hit max_new_tokens).
    """

    prompt_index: int
    token_ids: list[int]
    logprobs: list[float]
    text: str
    finish_reason: str

    def __post_init__(self) -> None:
        if len(self.token_ids) != len(self.logprobs):
            raise ValueError(
                f"Completion for prompt {self.prompt_index}: {len(self.token_ids)} tokens but "
                f"{len(self.logprobs)} logprobs"
            )
        if self.finish_reason not in FINISH_REASONS:
            raise ValueError(f"Completion.finish_reason must be one of {FINISH_REASONS}, got {self.finish_reason!r}")


@dataclass
class GenerationResult:
    """All completions of one `generate` call, grouped by prompt in prompt order."""

    completions: list[Completion]
    prompt_token_ids: list[list[int]]
    timings: dict[str, float] = field(default_factory=dict)  # e.g. {"generate": s}

    def counts(self) -> list[int]:
        out = [0] * len(self.prompt_token_ids)
        for c in self.completions:
            out[c.prompt_index] += 1
        return out


class WeightsHandle(Protocol):
    """Weights held elsewhere, e.g. in Ray's object store (`rlbal.ray.records.WeightsRef`)."""

    nbytes: int
    version: int  # learner updates behind these weights


# What a learner's `export_weights` hands the engine's `update_weights`: a name -> tensor mapping (HF naming) from
# a local learner, or a handle from the Ray learner group (which only the Ray rollout group takes).
Weights = Mapping[str, Any] | WeightsHandle


@runtime_checkable
class RolloutEngine(Protocol):
    """What the driver needs from a generator. Implementations: vLLM (default), transformers, and the Ray
    rollout group (`rlbal.ray.rollout_group.RolloutGroup`, K engines in actors)."""

    def generate(
        self, prompt_token_ids: Sequence[Sequence[int]], counts: Sequence[int], sampling: SamplingSpec
    ) -> GenerationResult:
        """Sample counts[i] completions for prompt i (counts may differ; 0 is allowed and yields none)."""
        ...

    def score(
        self, prompt_token_ids: Sequence[Sequence[int]], completion_token_ids: Sequence[Sequence[int]]
    ) -> list[list[float]]:
        """log p(completion token | prefix) of given completions (T = 1, full vocabulary), one list per pair:
        the engine's side of the post-sync check (`rlbal.driver.check_sync`)."""
        ...

    def update_weights(self, weights: Weights) -> float:
        """Load the learner's current parameters (`Weights`); returns seconds spent."""
        ...

    def sleep(self) -> None:
        """Free accelerator memory for a colocated learner (no-op where unsupported)."""
        ...

    def wake(self) -> None: ...

    def metrics(self) -> dict[str, float]:
        """The engine's own numbers for the step's log row (e.g. `weight_sync/*` of the last sync), no timings."""
        ...

    def shutdown(self) -> None:
        """Release what outlives the object (engine processes, actors); called once when the run ends."""
        ...


@runtime_checkable
class PipelinedEngine(RolloutEngine, Protocol):
    """A RolloutEngine that generates while its caller works on (the one-step-off loop, `rlbal.ray.async_loop`).
    Implementation: the Ray rollout group."""

    @property
    def version(self) -> int:
        """Learner updates behind the weights the engine holds, or will hold once queued updates have run."""
        ...

    def submit_generate(
        self, prompt_token_ids: Sequence[Sequence[int]], counts: Sequence[int], sampling: SamplingSpec
    ) -> Any:
        """`generate`, sent without waiting: returns a handle for `collect`."""
        ...

    def collect(self, pending: Any) -> GenerationResult:
        """Wait for a `submit_generate` and return its result."""
        ...

    def update_weights(self, weights: Weights, wait: bool = True) -> float:
        """`RolloutEngine.update_weights`; wait=False queues the load behind the generations already sent."""
        ...


def validate_request(
    prompt_token_ids: Sequence[Sequence[int]],
    counts: Sequence[int],
    sampling: SamplingSpec,
    max_model_len: int | None = None,
) -> None:
    """Raise ValueError unless `generate(prompt_token_ids, counts, sampling)` is well formed for an engine whose
    context holds `max_model_len` tokens (prompt + max_new_tokens must fit; None = unchecked).

    >>> validate_request([[1, 2], [3]], [2, 0], SamplingSpec(max_new_tokens=4), max_model_len=6)
    >>> validate_request([[1, 2]], [-1], SamplingSpec())
    Traceback (most recent call last):
    ...
    ValueError: generate: counts must be >= 0, got [-1]
    """
    if len(prompt_token_ids) != len(counts):
        raise ValueError(f"generate: {len(prompt_token_ids)} prompts but {len(counts)} counts")
    if any(c < 0 for c in counts):
        raise ValueError(f"generate: counts must be >= 0, got {list(counts)}")
    empty = [i for i, (p, c) in enumerate(zip(prompt_token_ids, counts)) if c > 0 and len(p) == 0]
    if empty:
        raise ValueError(f"generate: prompts {empty[:5]} are empty")
    if max_model_len is not None:
        too_long = [i for i, p in enumerate(prompt_token_ids) if len(p) + sampling.max_new_tokens > max_model_len]
        if too_long:
            raise ValueError(
                f"generate: prompts {too_long[:5]} + max_new_tokens={sampling.max_new_tokens} exceed "
                f"max_model_len={max_model_len}"
            )
