"""A Ray actor around one rollout engine: thin, it only builds the engine and delegates.

    RemoteRollout = remote_rollout_actor(num_cpus=1, max_restarts=1)     # imports Ray here, not before
    actor = RemoteRollout.remote("vllm", model_path, seed=0)
    reply = ray.get(actor.generate.remote(prompt_ids, counts, SamplingSpec(max_new_tokens=64)))
    reply.incarnation, reply.value                                       # uuid of this actor life, GenerationResult
    ray.get(actor.update_weights.remote(ray.put(to_numpy(learner.state_dict()))))

Every reply carries the actor's incarnation id, a uuid made when the actor (re)starts: a caller that
sees it change knows a restart lost the weights and must send them again. Weights arrive as
`NumpyWeights` from the object store: numpy arrays are zero-copy on `ray.get` (torch tensors would
be copied and deserialised), and become tensors sharing that memory (`weight_sync.from_numpy`).
The class itself has no Ray dependency, so it also runs (and is tested) in-process.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlbal.rollout.engine import GenerationResult, SamplingSpec
from rlbal.rollout.factory import make_engine


@dataclass
class ActorReply:
    """What every actor method returns: the actor's incarnation id and the engine's answer."""

    incarnation: str
    value: Any


class RolloutActor:
    """Builds `make_engine(kind, model_path, **engine_opts)` in the actor process and delegates to it."""

    def __init__(self, kind: str, model_path: str | Path, **engine_opts: Any) -> None:
        self.incarnation = uuid.uuid4().hex
        self.engine = make_engine(kind, model_path, **engine_opts)

    def ping(self) -> ActorReply:
        return ActorReply(self.incarnation, None)

    def generate(
        self, prompt_token_ids: Sequence[Sequence[int]], counts: Sequence[int], sampling: SamplingSpec
    ) -> ActorReply:
        result: GenerationResult = self.engine.generate(prompt_token_ids, counts, sampling)
        return ActorReply(self.incarnation, result)

    def update_weights(self, weights: Any) -> ActorReply:
        """`weights`: `NumpyWeights` (from the object store) or a name -> tensor mapping; value = seconds."""
        from rlbal.rollout.weight_sync import NumpyWeights, from_numpy

        state: Mapping[str, Any] = from_numpy(weights) if isinstance(weights, NumpyWeights) else weights
        return ActorReply(self.incarnation, self.engine.update_weights(state))

    def score(
        self, prompt_token_ids: Sequence[Sequence[int]], completion_token_ids: Sequence[Sequence[int]]
    ) -> ActorReply:
        return ActorReply(self.incarnation, self.engine.score(prompt_token_ids, completion_token_ids))

    def sleep(self) -> ActorReply:
        self.engine.sleep()
        return ActorReply(self.incarnation, None)

    def wake(self) -> ActorReply:
        self.engine.wake()
        return ActorReply(self.incarnation, None)


def remote_rollout_actor(**ray_options: Any) -> Any:
    """`ray.remote(**ray_options)(RolloutActor)`; Ray is imported here, on first use.

    Give `num_cpus` (<= its placement-group bundle) and, on GPUs, `num_gpus`; `max_restarts` /
    `max_task_retries` make restarts visible through `ActorReply.incarnation`.
    """
    import ray

    return ray.remote(**ray_options)(RolloutActor)
