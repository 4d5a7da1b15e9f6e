"""GSM8K answers: the number after ``####``, compared numerically.

The gold may be GSM8K's full worked solution (ending in ``#### 72``) or just the number; the completion's
answer is read from its own ``#### X`` line by default, or by any other extraction mode.

>>> gsm8k_reward("48 + 24 = 72 clips.\\n#### 72", "Natalia sold 48/2 = 24 clips in May.\\n#### 72")
RewardResult(score=1.0, outcome='correct', reason="answer '72' = gold '72'")
>>> gsm8k_reward("She sold 72 clips.", "72").outcome  # no #### line
'unparsable'
"""

from __future__ import annotations

from reward.numeric import numeric_reward
from reward.result import RewardResult


def gold_number(answer: str) -> str:
    """The text after the last ``####`` of a GSM8K solution, or the whole answer if it has none.

    >>> gold_number("3 + 4 = 7\\n#### 7")
    '7'
    """
    return answer.rsplit("####", 1)[-1].strip()


def gsm8k_reward(
    completion: str,
    answer: str,
    *,
    extraction: str = "gsm8k",
    rel_tol: float = 1e-6,
    abs_tol: float = 1e-9,
    **meta,
) -> RewardResult:
    """1.0 if the completion's final number equals the gold's number after ``####``, else 0.0.

    >>> gsm8k_reward("#### 1,080", "1080").score
    1.0
    """
    return numeric_reward(completion, gold_number(answer), extraction=extraction, rel_tol=rel_tol, abs_tol=abs_tol)
