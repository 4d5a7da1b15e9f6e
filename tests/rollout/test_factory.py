"""`make_engine`: the registry of engine kinds, and the recipe options each kind takes."""

from __future__ import annotations

import pytest

from rlbal.rollout import ENGINES, RolloutEngine, make_engine, register_engine
from rlbal.rollout.hf_engine import HFEngine


def test_unknown_kind_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown engine kind 'sglang'; valid names: 'hf', 'vllm'"):
        make_engine("sglang", "/nowhere")


def test_a_taken_name_cannot_be_registered_again():
    with pytest.raises(ValueError, match=r"engine kind 'hf' is already registered"):
        register_engine("hf", lambda path, **kw: None)
    assert sorted(ENGINES) == ["hf", "vllm"]


def test_hf_kind_builds_an_hf_engine_with_the_shared_options(tiny_path):
    engine = make_engine("hf", tiny_path, seed=3, max_model_len=64, gpu_memory_utilization=0.5, max_batch_tokens=128)
    assert isinstance(engine, HFEngine) and isinstance(engine, RolloutEngine)
    assert (engine.seed, engine.max_model_len, engine.max_batch_tokens) == (3, 64, 128)
