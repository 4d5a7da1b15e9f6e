"""Procedural prompts with known difficulty levels, from reasoning-gym generators.

Each task has numbered levels (1 = easiest), each a set of generator settings (number of terms,
digits, numbers to combine). Generation is deterministic in (seed, task, level): the same arguments
give the same questions on every machine. Each row keeps the task name, level and reasoning-gym
metadata in its meta, which is what reasoning-gym's scorer needs:

    table = procedural_table(("chain_sum",), levels=(1, 2), size=4, seed=0)
    table.keys[0]          # 'chain_sum/L1/s0/0'
    table.difficulty[:5]   # [1., 1., 1., 1., 2.]  (the level)
    entry = {"answer": table.answers[i], "metadata": table.metas[i]["metadata"]}  # all a scorer reads
    reasoning_gym.get_score_answer_fn(table.metas[i]["task"])(completion_answer, entry)
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from rlbal.data.records import DataError, PromptTable

# task -> level -> reasoning-gym config overrides. Levels grow one difficulty axis at a time.
LEVELS: dict[str, dict[int, dict[str, Any]]] = {
    "chain_sum": {
        1: dict(min_terms=2, max_terms=2, min_digits=1, max_digits=1),
        2: dict(min_terms=3, max_terms=3, min_digits=1, max_digits=1),
        3: dict(min_terms=2, max_terms=2, min_digits=2, max_digits=2),
        4: dict(min_terms=3, max_terms=3, min_digits=2, max_digits=2),
        5: dict(min_terms=4, max_terms=4, min_digits=3, max_digits=3),
    },
    "basic_arithmetic": {
        1: dict(
            min_terms=2,
            max_terms=2,
            min_digits=1,
            max_digits=1,
            operators=("+", "-"),
            allow_parentheses=False,
            allow_negation=False,
        ),
        2: dict(
            min_terms=2,
            max_terms=2,
            min_digits=1,
            max_digits=1,
            operators=("+", "-", "*"),
            allow_parentheses=False,
            allow_negation=False,
        ),
        3: dict(
            min_terms=3,
            max_terms=3,
            min_digits=1,
            max_digits=2,
            operators=("+", "-", "*"),
            allow_parentheses=False,
            allow_negation=False,
        ),
        4: dict(
            min_terms=3,
            max_terms=4,
            min_digits=2,
            max_digits=2,
            operators=("+", "-", "*", "/"),
            allow_parentheses=True,
            allow_negation=False,
        ),
        5: dict(
            min_terms=4,
            max_terms=5,
            min_digits=2,
            max_digits=3,
            operators=("+", "-", "*", "/"),
            allow_parentheses=True,
            allow_negation=True,
        ),
    },
    "countdown": {
        1: dict(min_numbers=3, max_numbers=3, min_value=1, max_value=10, min_target=10, max_target=50),
        2: dict(min_numbers=4, max_numbers=4, min_value=1, max_value=25, min_target=25, max_target=200),
        3: dict(min_numbers=5, max_numbers=5, min_value=1, max_value=100, min_target=100, max_target=500),
        4: dict(min_numbers=6, max_numbers=6, min_value=1, max_value=100, min_target=100, max_target=999),
    },
    # reasoning-gym 0.1.25 supports only difficulty 1.0 for GSM-symbolic templates: one level.
    "gsm_symbolic": {1: {}},
}


def _check(task: str, level: int) -> dict[str, Any]:
    if task not in LEVELS:
        raise DataError(f"unknown procedural task {task!r}; valid tasks: {sorted(LEVELS)}")
    if level not in LEVELS[task]:
        raise DataError(f"task {task!r} has no level {level}; valid levels: {sorted(LEVELS[task])}")
    return LEVELS[task][level]


def check_tasks(tasks: Sequence[str], levels: Sequence[int]) -> None:
    """Raise DataError naming the first task that is unknown or has none of `levels` (no generation)."""
    for task in tasks:
        if task not in LEVELS:
            raise DataError(f"unknown procedural task {task!r}; valid tasks: {sorted(LEVELS)}")
        if not any(lv in LEVELS[task] for lv in levels):
            raise DataError(f"task {task!r} has none of the levels {list(levels)}; valid: {sorted(LEVELS[task])}")


def level_seed(seed: int, task: str, level: int) -> int:
    """Generator seed of one (task, level): independent streams per task and level, stable across runs.

    >>> level_seed(0, "chain_sum", 1) == level_seed(0, "chain_sum", 1) != level_seed(0, "chain_sum", 2)
    True
    """
    # crc32, not hash(): Python's str hash is salted per process.
    ss = np.random.SeedSequence([seed, zlib.crc32(task.encode()), level])
    return int(ss.generate_state(1, dtype=np.uint32)[0])


def generate_entries(task: str, level: int, size: int, seed: int) -> list[dict[str, Any]]:
    """`size` reasoning-gym entries ({'question', 'answer', 'metadata'}) of one task and level."""
    import reasoning_gym  # heavy (sympy, matplotlib via cellpylib): imported when data is generated

    overrides = _check(task, level)
    if size < 1:
        raise ValueError(f"procedural size must be >= 1, got {size}")
    return list(reasoning_gym.create_dataset(task, size=size, seed=level_seed(seed, task, level), **overrides))


def procedural_table(tasks: Sequence[str], levels: Sequence[int], size: int | Sequence[int], seed: int) -> PromptTable:
    """`size` prompts per (task, level) for every level a task has among `levels`, tasks in order (a sequence:
    one size per entry of `levels`).

    Levels a task does not define are skipped (gsm_symbolic has only level 1); a task with none of
    `levels` raises. Keys are "<task>/L<level>/s<seed>/<j>", j the position within its (task, level).
    """
    rows: list[tuple[str, int, str, dict[str, Any]]] = []  # (task, level, key, reasoning-gym entry)
    check_tasks(tasks, levels)
    sizes = dict(zip(levels, size)) if isinstance(size, (tuple, list)) else dict.fromkeys(levels, size)
    if len(sizes) != len(levels):
        raise DataError(f"procedural data: {len(levels)} levels need as many sizes, got {list(size)}")
    for task in tasks:
        mine = [lv for lv in levels if lv in LEVELS[task]]
        rows += [
            (task, lv, f"{task}/L{lv}/s{seed}/{j}", e)
            for lv in mine
            for j, e in enumerate(generate_entries(task, lv, sizes[lv], seed))
        ]
    return PromptTable(
        name="procedural",
        sources=(f"procedural({','.join(tasks)}; seed={seed})",),
        keys=[key for _, _, key, _ in rows],
        messages=[[{"role": "user", "content": e["question"]}] for *_, e in rows],
        answers=[str(e["answer"]) for *_, e in rows],
        metas=[{"task": t, "level": lv, "metadata": e["metadata"]} for t, lv, _, e in rows],
        difficulty=np.array([lv for _, lv, _, _ in rows], dtype=np.float64),
        rows=np.arange(len(rows), dtype=np.int64),
        source_index=np.zeros(len(rows), dtype=np.int32),
    )
