"""Every implementation of a Protocol the loop relies on has each of its methods, and takes the Protocol's
positional arguments (extra options with defaults are allowed): the local and the Ray engine and learner, the
learner backends and their worlds, the prompt sources, the reward executor."""

from __future__ import annotations

import inspect
import typing

import pytest

from reward.executor import RewardExecutor, RewardScorer
from rlbal.data.prompt_source import PromptSource, PromptStream, SampledSource
from rlbal.learner.backends import AccelerateBackend, TorchBackend
from rlbal.learner.contracts import DataParallelWorld, LearnerBackend, PipelinedLearner, PolicyLearner
from rlbal.learner.learner import Learner
from rlbal.learner.world import OneProcess, ProcessGroup
from rlbal.rollout.engine import PipelinedEngine, RolloutEngine
from rlbal.rollout.hf_engine import HFEngine
from rlbal.rollout.vllm_engine import VLLMEngine


def _ray(name: str):
    pytest.importorskip("ray")
    from rlbal.ray.learner_group import LearnerGroup
    from rlbal.ray.rollout_group import RolloutGroup

    return {"LearnerGroup": LearnerGroup, "RolloutGroup": RolloutGroup}[name]


IMPLEMENTATIONS = [
    (RolloutEngine, lambda: HFEngine),
    (RolloutEngine, lambda: VLLMEngine),
    (RolloutEngine, lambda: _ray("RolloutGroup")),
    (PipelinedEngine, lambda: _ray("RolloutGroup")),
    (PolicyLearner, lambda: Learner),
    (PolicyLearner, lambda: _ray("LearnerGroup")),
    (PipelinedLearner, lambda: _ray("LearnerGroup")),
    (LearnerBackend, lambda: TorchBackend),
    (LearnerBackend, lambda: AccelerateBackend),
    (DataParallelWorld, lambda: OneProcess),
    (DataParallelWorld, lambda: ProcessGroup),
    (PromptStream, lambda: PromptSource),
    (PromptStream, lambda: SampledSource),
    (RewardScorer, lambda: RewardExecutor),
]


def _methods(proto: type) -> dict[str, typing.Callable]:
    return {name: fn for name, fn in vars(proto).items() if not name.startswith("_") and callable(fn)}


def _positional(fn: typing.Callable) -> tuple[int, int]:
    """(required, accepted) positional arguments, without self."""
    params = list(inspect.signature(fn).parameters.values())[1:]
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    positional = [p for p in params if p.kind in kinds]
    return sum(p.default is inspect.Parameter.empty for p in positional), len(positional)


@pytest.mark.parametrize(
    "proto,impl", IMPLEMENTATIONS, ids=[f"{p.__name__}-{i}" for i, (p, _) in enumerate(IMPLEMENTATIONS)]
)
def test_implementation_has_every_method_of_its_protocol(proto, impl):
    cls = impl()
    for name, fn in _methods(proto).items():
        assert callable(getattr(cls, name, None)), f"{cls.__name__} lacks {proto.__name__}.{name}"
        required, accepted = _positional(getattr(cls, name))
        assert required <= _positional(fn)[1] <= accepted, (cls.__name__, name)  # the loop's calls fit


def test_protocols_name_what_the_loop_calls():
    assert set(_methods(RolloutEngine)) == {
        "generate",
        "score",
        "update_weights",
        "sleep",
        "wake",
        "metrics",
        "shutdown",
    }
    assert set(_methods(PolicyLearner)) == {
        "update",
        "score",
        "export_weights",
        "load_weights",
        "save_model",
        "save_state",
        "load_state",
    }


def test_pipelined_protocols_name_what_the_one_step_off_loop_calls():
    assert set(_methods(PipelinedEngine)) == {"submit_generate", "collect", "update_weights"}
    assert set(_methods(PipelinedLearner)) == {"submit_update", "finish_update"}
    assert isinstance(vars(PipelinedEngine)["version"], property)
    assert set(PipelinedLearner.__annotations__) == {"steps", "stats"}


def test_the_one_step_off_loop_refuses_a_local_engine_and_learner():
    from types import SimpleNamespace

    from rlbal.ray.async_loop import async_train_loop

    parts = SimpleNamespace(engine=HFEngine.__new__(HFEngine), learner=Learner.__new__(Learner))
    with pytest.raises(TypeError, match="ray.async_steps=1 needs .* got HFEngine and Learner"):
        async_train_loop(None, parts, None, None, None)


def test_data_members_of_the_single_process_world_and_backend():
    world, backend = OneProcess(), TorchBackend("cpu")
    assert (world.rank, world.world_size, world.is_main) == (0, 1, True)
    assert isinstance(backend.world, OneProcess) and backend.device.type == "cpu"
