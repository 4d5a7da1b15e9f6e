"""Procedural prompts: deterministic in the seed, levels as configured, meta enough to score with reasoning-gym."""

import numpy as np
import pytest

from rlbal.data import LEVELS, ProceduralSpec, load_prompts, procedural_table
from rlbal.data.procedural import generate_entries


def test_same_seed_same_prompts_other_seed_other_prompts():
    a = procedural_table(("chain_sum", "basic_arithmetic"), levels=(1, 3), size=20, seed=4)
    b = procedural_table(("chain_sum", "basic_arithmetic"), levels=(1, 3), size=20, seed=4)
    c = procedural_table(("chain_sum", "basic_arithmetic"), levels=(1, 3), size=20, seed=5)
    assert a.messages == b.messages and a.answers == b.answers and a.metas == b.metas
    assert a.messages != c.messages


def test_layout_keys_and_difficulty():
    t = procedural_table(("chain_sum", "gsm_symbolic"), levels=(1, 2), size=3, seed=0)
    # chain_sum L1, L2 (3 each), then gsm_symbolic L1 only (it has no level 2)
    assert t.keys == [
        "chain_sum/L1/s0/0",
        "chain_sum/L1/s0/1",
        "chain_sum/L1/s0/2",
        "chain_sum/L2/s0/0",
        "chain_sum/L2/s0/1",
        "chain_sum/L2/s0/2",
        "gsm_symbolic/L1/s0/0",
        "gsm_symbolic/L1/s0/1",
        "gsm_symbolic/L1/s0/2",
    ]
    np.testing.assert_array_equal(t.difficulty, [1, 1, 1, 2, 2, 2, 1, 1, 1])
    assert [m["task"] for m in t.metas] == ["chain_sum"] * 6 + ["gsm_symbolic"] * 3
    assert [m["level"] for m in t.metas] == [1, 1, 1, 2, 2, 2, 1, 1, 1]


@pytest.mark.parametrize("level", sorted(LEVELS["chain_sum"]))
def test_chain_sum_levels_follow_their_config(level):
    cfg = LEVELS["chain_sum"][level]
    for e in generate_entries("chain_sum", level, 30, seed=1):
        terms = e["metadata"]["expression"].replace("-", "+").split("+")
        assert cfg["min_terms"] <= len(terms) <= cfg["max_terms"]
        assert all(cfg["min_digits"] <= len(x.strip()) <= cfg["max_digits"] for x in terms)
        # the answer is the expression's value (reference: Python's own arithmetic)
        assert int(e["answer"]) == eval(e["metadata"]["expression"])  # noqa: S307 - digits and +/- only


@pytest.mark.parametrize("task", ["chain_sum", "basic_arithmetic", "countdown", "gsm_symbolic"])
def test_reference_answer_scores_one_with_reasoning_gym_from_meta(task):
    import reasoning_gym

    t = procedural_table((task,), levels=(1,), size=5, seed=2)
    for i in range(len(t)):
        meta = t.metas[i]
        # no question needed: reasoning-gym 0.1.25 scorers read only the answer and the metadata
        entry = {"answer": t.answers[i], "metadata": meta["metadata"]}
        assert reasoning_gym.get_score_answer_fn(meta["task"])(t.answers[i], entry) == 1.0
        assert reasoning_gym.get_score_answer_fn(meta["task"])("not an answer", entry) < 0.5


def test_levels_get_harder_for_the_tiny_prompt_budget(tokenizer):
    ds = load_prompts(ProceduralSpec(tasks=("chain_sum",), levels=(1, 5), size=10, seed=0), tokenizer)
    lengths = ds.prompt_lengths
    # level 5 (4 terms of 3 digits) has longer prompts than level 1 (2 terms of 1 digit)
    assert lengths[ds.difficulty == 5].min() > lengths[ds.difficulty == 1].max()


def test_unknown_task_or_level():
    with pytest.raises(ValueError, match=r"unknown procedural task 'sudoku'; valid tasks: \['basic_arithmetic'"):
        procedural_table(("sudoku",), levels=(1,), size=2, seed=0)
    with pytest.raises(ValueError, match=r"task 'gsm_symbolic' has none of the levels \[2, 3\]; valid: \[1\]"):
        procedural_table(("gsm_symbolic",), levels=(2, 3), size=2, seed=0)
    with pytest.raises(ValueError, match=r"task 'countdown' has no level 9; valid levels: \[1, 2, 3, 4\]"):
        generate_entries("countdown", 9, 2, seed=0)


def test_meta_is_what_the_rgym_reward_takes():
    from reward.rgym import rgym_reward

    t = procedural_table(("chain_sum", "basic_arithmetic"), levels=(2,), size=3, seed=0)
    for answer, meta in zip(t.answers, t.metas):
        assert rgym_reward(f"so \\boxed{{{answer}}}", answer, **meta).outcome == "correct"
        assert rgym_reward("\\boxed{9999}", answer, **meta).outcome == "wrong"
