"""Reward resolution: built-in names, import paths, and one clear error per way a spec can be wrong."""

from __future__ import annotations

import pytest

from reward.combine import WeightedReward
from reward.math import math_reward
from reward.registry import (
    REWARDS,
    BoundReward,
    RewardSpec,
    RewardSpecError,
    build_reward,
    preload_modules,
    resolve_reward,
)

FAULTY = "tests.reward.faulty_rewards"


def test_builtin_names_resolve():
    assert resolve_reward("math") is math_reward
    assert set(REWARDS) == {"math", "numeric", "exact", "gsm8k", "rgym", "format"}


def test_import_path_resolves():
    from tests.reward import faulty_rewards

    assert resolve_reward(f"{FAULTY}:scripted") is faulty_rewards.scripted


@pytest.mark.parametrize(
    "spec,message",
    [
        ("mathh", r"unknown reward 'mathh': use one of \('math', .*or an import path 'package.module:function'"),
        ("tests.reward.faulty_rewards.scripted", "unknown reward"),  # a dotted path without ':' is ambiguous
        ("no_such_pkg.rewards:fn", r"module 'no_such_pkg.rewards' not found"),
        (f"{FAULTY}:missing", r"has no attribute 'missing' \(it has: .*'scripted'"),
        (f"{FAULTY}:NOT_CALLABLE", r"is not callable \(it is a int\)"),
    ],
)
def test_resolution_errors(spec, message):
    with pytest.raises(RewardSpecError, match=message):
        resolve_reward(spec)


@pytest.mark.parametrize(
    "spec,message",
    [
        (RewardSpec("math:sqrt"), r"cannot be called as fn\(completion, answer, \*\*kwargs\)"),  # takes one argument
        (RewardSpec("numeric", {"tolerance": 0.1}), r"no parameter named \['tolerance'\]"),  # a typo, not meta
        (RewardSpec(f"{FAULTY}:only_completion", {"scale": 2}), "unexpected keyword argument 'scale'"),
    ],
)
def test_signature_errors(spec, message):
    with pytest.raises(RewardSpecError, match=message):
        build_reward(spec)


@pytest.mark.parametrize(
    "spec,message",
    [
        (RewardSpec("math", {"extraction": "last"}), "extraction must be one of"),
        (RewardSpec("format", {"style": "xml"}), "style must be one of"),
    ],
)
def test_builtin_options_fail_at_build_time(spec, message):
    with pytest.raises(ValueError, match=message):
        build_reward(spec)


def test_function_without_meta_gets_only_its_own_keys():
    fn = build_reward(RewardSpec(f"{FAULTY}:only_completion"))
    assert isinstance(fn, BoundReward) and fn.meta_keys == frozenset({"completion", "answer"})
    assert fn("a", "a", difficulty=0.5, task="x") == 1.0  # would raise TypeError if meta were passed on


def test_recipe_kwargs_win_over_meta():
    fn = build_reward(RewardSpec("exact", {"extraction": "raw"}))
    # meta asks for "boxed" (which would find nothing), the recipe's "raw" wins
    assert fn("Paris", "paris", extraction="boxed").outcome == "correct"


def test_several_specs_make_a_weighted_sum():
    fn = build_reward([RewardSpec("numeric"), RewardSpec("format", {"style": "boxed"}, weight=0.5)])
    assert isinstance(fn, WeightedReward)
    assert fn(r"\boxed{3}", "3").score == 1.5  # 1 * 1 + 0.5 * 1
    scaled = build_reward(RewardSpec("numeric", weight=-2.0))  # one spec with a weight is scaled too
    assert scaled("3", "3").score == -2.0


def test_preload_modules():
    assert preload_modules("math") == ("math_verify",)
    several = [RewardSpec("rgym"), RewardSpec("math"), RewardSpec("format")]
    assert preload_modules(several) == ("reasoning_gym", "math_verify")
    assert preload_modules(f"{FAULTY}:scripted") == (FAULTY,)


@pytest.mark.parametrize("kwargs,field", [({"fn": ""}, "fn"), ({"fn": "math", "weight": float("nan")}, "weight")])
def test_spec_validation(kwargs, field):
    with pytest.raises(ValueError, match=f"RewardSpec.{field}"):
        RewardSpec(**kwargs)


def test_as_specs_rejects_garbage():
    with pytest.raises(RewardSpecError, match="non-empty sequence"):
        build_reward([])
