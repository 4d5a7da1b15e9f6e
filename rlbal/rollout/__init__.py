"""Rollout engines: sample a different number of completions per prompt, take the learner's weights.

    from rlbal.rollout import SamplingSpec, make_engine
    engine = make_engine("vllm", model_path)                     # or "hf" (transformers)
    result = engine.generate(prompt_ids, counts=[2, 7, 3], sampling=SamplingSpec(max_new_tokens=256))
    seconds = engine.update_weights(learner.state_dict())

Importing this package loads neither vLLM nor Ray: engines import their backend when built, and
`rlbal.rollout.actor.remote_rollout_actor` imports Ray when called. See docs/engines.md.
"""

from rlbal.rollout.engine import (
    FINISH_REASONS,
    Completion,
    GenerationResult,
    RolloutEngine,
    SamplingSpec,
    validate_request,
)
from rlbal.rollout.factory import ENGINES, make_engine, register_engine

__all__ = [
    "FINISH_REASONS",
    "Completion",
    "GenerationResult",
    "RolloutEngine",
    "SamplingSpec",
    "validate_request",
    "ENGINES",
    "make_engine",
    "register_engine",
]
