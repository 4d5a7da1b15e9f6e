r"""Format rewards: 1.0 if the completion has the requested shape, else 0.0 (the answer is not checked).

Styles (a closed set):
    boxed          a non-empty \boxed{...} somewhere
    answer_tag     a non-empty <answer>...</answer>
    think_answer   exactly <think>...</think> then <answer>...</answer> (R1 style), nothing else around them
    gsm8k          a "#### X" line

Usually combined with a correctness reward (``reward.combine``), e.g. correctness + 0.1 x format.

>>> format_reward(r"<think>2+2</think> <answer>4</answer>", "", style="think_answer")
RewardResult(score=1.0, outcome='correct', reason="format 'think_answer' present")
>>> format_reward("4", "", style="boxed").outcome
'wrong'
"""

from __future__ import annotations

import re
from collections.abc import Callable

from reward.extract import extract
from reward.result import RewardResult

_THINK_ANSWER_RE = re.compile(r"\s*<think>.*?</think>\s*<answer>(.*?)</answer>\s*", re.DOTALL)

_STYLES: dict[str, Callable[[str], bool]] = {
    "boxed": lambda text: extract(text, "boxed") is not None,
    "answer_tag": lambda text: extract(text, "answer_tag") is not None,
    "think_answer": lambda text: bool((m := _THINK_ANSWER_RE.fullmatch(text)) and m.group(1).strip()),
    "gsm8k": lambda text: extract(text, "gsm8k") is not None,
}
FORMAT_STYLES = tuple(_STYLES)


def check_style(style: str) -> str:
    """Return style if it names a format, else raise ValueError listing the valid names."""
    if style not in _STYLES:
        raise ValueError(f"style must be one of {FORMAT_STYLES}, got {style!r}")
    return style


def format_reward(completion: str, answer: str = "", *, style: str = "boxed", **meta) -> RewardResult:
    """1.0 / "correct" if ``completion`` has the shape ``style``, else 0.0 / "wrong"; ``answer`` is unused.

    >>> format_reward("<answer>4</answer>", style="answer_tag").score
    1.0
    """
    if _STYLES[check_style(style)](completion):
        return RewardResult(1.0, "correct", f"format {style!r} present")
    return RewardResult(0.0, "wrong", f"format {style!r} missing")
