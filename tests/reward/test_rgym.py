"""rgym_reward on real reasoning-gym entries: the entry is rebuilt from (answer, meta) as the data layer passes it."""

from __future__ import annotations

import json

import pytest

from reward.rgym import rgym_reward

rg = pytest.importorskip("reasoning_gym")


def _meta(entry: dict, as_json: bool = True) -> dict:
    # What the data layer keeps per prompt: the task name and reasoning-gym's metadata as JSON text.
    metadata = entry["metadata"]
    return {"task": metadata["source_dataset"], "metadata": json.dumps(metadata) if as_json else metadata}


@pytest.fixture(scope="module")
def chain_sum() -> dict:
    entry = rg.create_dataset("chain_sum", size=2, seed=1)[0]
    assert (entry["metadata"]["expression"], entry["answer"]) == ("4 - 1 - 7", "-4")  # 4 - 1 - 7 = -4
    return entry


@pytest.fixture(scope="module")
def prime() -> dict:
    entry = rg.create_dataset("prime_factorization", size=1, seed=1)[0]
    assert (entry["metadata"]["number"], entry["answer"]) == (139, "139")  # 139 is prime
    return entry


ROWS = [
    # fixture, completion, kwargs, outcome, score, why
    ("chain_sum", r"4 - 1 - 7 = \boxed{-4}", {}, "correct", 1.0, "right sum"),
    ("chain_sum", r"\boxed{4}", {}, "wrong", 0.0, "sign error"),
    ("chain_sum", "4 - 1 - 7 = -4", {}, "unparsable", 0.0, "no box under the default extraction"),
    ("chain_sum", "4 - 1 - 7 = -4", {"extraction": "boxed_or_last_number"}, "correct", 1.0, "lenient extraction"),
    ("chain_sum", "<answer>-4</answer>", {"extraction": "answer_tag"}, "correct", 1.0, "reasoning-gym's own tag"),
    ("prime", r"\boxed{139}", {}, "correct", 1.0, "139 is prime: its factorisation is itself"),
    ("prime", r"\boxed{2 × 3}", {}, "wrong", 0.01, "well-formed but wrong: reasoning-gym's 0.01 format credit"),
    ("prime", r"\boxed{2 × 3}", {"threshold": 0.005}, "correct", 0.01, "0.01 >= threshold 0.005"),
    ("prime", r"\boxed{nonsense}", {}, "unparsable", 0.0, "the scorer raises ValueError on non-numbers"),
]


@pytest.mark.parametrize("which,completion,kwargs,outcome,score,why", ROWS, ids=[r[5] for r in ROWS])
def test_rgym_reward_table(which, completion, kwargs, outcome, score, why, request):
    entry = request.getfixturevalue(which)
    result = rgym_reward(completion, entry["answer"], **_meta(entry), **kwargs)
    assert (result.outcome, result.score) == (outcome, score), f"{why}: {result.reason}"


def test_metadata_as_dict_or_json_agree(chain_sum):
    as_json = rgym_reward(r"\boxed{-4}", "-4", **_meta(chain_sum, as_json=True))
    as_dict = rgym_reward(r"\boxed{-4}", "-4", **_meta(chain_sum, as_json=False))
    assert as_json == as_dict and as_json.outcome == "correct"


def test_task_falls_back_to_source_dataset(prime):
    # No meta["task"]: reasoning-gym records the task name in metadata["source_dataset"].
    result = rgym_reward(r"\boxed{139}", "139", metadata=prime["metadata"])
    assert (result.outcome, result.score) == ("correct", 1.0)


def test_unknown_task_is_an_error():
    result = rgym_reward(r"\boxed{1}", "1", task="no_such_task", metadata="{}")
    assert (result.outcome, result.score) == ("error", 0.0)
    assert "no_such_task" in result.reason


def test_missing_task_is_an_error():
    result = rgym_reward(r"\boxed{1}", "1", metadata={"number": 1})
    assert (result.outcome, result.score) == ("error", 0.0)
    assert "meta['task']" in result.reason
