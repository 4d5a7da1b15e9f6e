"""reasoning-gym tasks scored by reasoning-gym's own per-task scorer, without the dataset object.

The entry a scorer needs is rebuilt from the reward call: ``answer`` is the entry's answer and the
per-prompt ``meta`` carries reasoning-gym's ``metadata`` (a dict, or its JSON text) and the task name
(``meta["task"]``, else ``metadata["source_dataset"]``, which reasoning-gym itself records). The scorer
comes from ``reasoning_gym.get_score_answer_fn(task)``, cached per worker; reasoning-gym is imported lazily
(~1.6 s).

Outcomes: "correct" when the scorer gives at least ``threshold`` (1.0 = full credit; several scorers give
0.01-0.05 of format credit to well-formed wrong answers, which stays the score but counts as "wrong");
"unparsable" when no answer is extracted or the scorer rejects the text with ValueError (e.g.
``prime_factorization`` on "nonsense"); "error" when the task is missing or unknown. Tasks whose metadata
holds tuples that JSON turns into lists (``arc_agi``, ``rearc``) do not score correctly from JSON metadata.

>>> meta = {"task": "chain_sum", "metadata": '{"source_dataset": "chain_sum", "expression": "4 - 1 - 7"}'}
>>> rgym_reward(r"4 - 1 - 7 = \\boxed{-4}", "-4", **meta)
RewardResult(score=1.0, outcome='correct', reason="chain_sum scored '-4' at 1.0")
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any

from reward.extract import extract
from reward.result import RewardResult

PRELOAD = ("reasoning_gym",)  # modules a worker imports before its first timed call


@cache
def _scorer(task: str) -> Callable[..., float]:
    import reasoning_gym

    return reasoning_gym.get_score_answer_fn(task)


def _metadata(metadata: Mapping[str, Any] | str | None) -> dict:
    if isinstance(metadata, str):
        return json.loads(metadata)
    return dict(metadata or {})


def rgym_reward(
    completion: str,
    answer: str,
    *,
    task: str | None = None,
    metadata: Mapping[str, Any] | str | None = None,
    question: str = "",
    extraction: str = "boxed",
    threshold: float = 1.0,
    **meta,
) -> RewardResult:
    """reasoning-gym's score (0..1) of the extracted answer; "correct" at or above ``threshold``.

    >>> rgym_reward("<answer>5 × 7</answer>", "5 × 7", task="prime_factorization", extraction="answer_tag",
    ...             metadata={"number": 35, "factors": [5, 7]}).outcome
    'correct'
    """
    entry_meta = _metadata(metadata)
    name = task or entry_meta.get("source_dataset")
    if not name:
        return RewardResult(0.0, "error", "no reasoning-gym task: set meta['task'] or metadata['source_dataset']")
    pred = extract(completion, extraction)
    if pred is None:
        return RewardResult(0.0, "unparsable", f"no answer found by extraction {extraction!r}")
    try:
        scorer = _scorer(name)
    except ValueError as exc:  # reasoning-gym: "Dataset 'x' not registered"
        return RewardResult(0.0, "error", f"unknown reasoning-gym task {name!r}: {exc}")
    entry = {"question": question, "answer": answer, "metadata": entry_meta}
    try:
        score = float(scorer(answer=pred, entry=entry))
    except ValueError as exc:  # the scorer could not read the answer text (not a bug on our side)
        return RewardResult(0.0, "unparsable", f"{name} scorer rejected {pred!r}: {exc}")
    outcome = "correct" if score >= threshold else "wrong"
    return RewardResult(score, outcome, f"{name} scored {pred!r} at {score!r}")
