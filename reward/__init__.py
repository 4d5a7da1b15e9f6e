"""Verifiable reward functions for rlbal (importable on their own).

A reward is a plain callable ``fn(completion, answer, **meta) -> RewardResult | float`` (``reward.result``);
built-ins are named in ``REWARDS`` ("math", "numeric", "exact", "gsm8k", "rgym", "format"), custom ones are
plugged in by import path "package.module:function" (``reward.registry``). ``RewardExecutor`` scores a
step's completions in worker processes with a per-call timeout (``reward.executor``);
``overlong_penalty`` is DAPO's length shaping (``reward.shaping``). See docs/rewards.md.

Imports only the standard library, numpy and `rlbal.registry` (the one registry style of rlbal, standard library
only); math-verify and reasoning-gym load on first use.

>>> from reward import RewardSpec, build_reward
>>> build_reward(RewardSpec("gsm8k"))("... so she has 5 left.\\n#### 5", "#### 5").outcome
'correct'
"""

from reward.combine import WeightedReward
from reward.executor import RewardExecutor, ScoreBatch
from reward.extract import EXTRACTIONS, extract
from reward.format import FORMAT_STYLES, format_reward
from reward.gsm8k import gsm8k_reward
from reward.math import math_reward
from reward.numeric import exact_reward, numeric_reward
from reward.registry import REWARDS, RewardSpec, RewardSpecError, build_reward, resolve_reward
from reward.result import OUTCOMES, RewardFn, RewardResult, as_result
from reward.rgym import rgym_reward
from reward.shaping import overlong_penalty

__all__ = [
    "EXTRACTIONS",
    "FORMAT_STYLES",
    "OUTCOMES",
    "REWARDS",
    "RewardExecutor",
    "RewardFn",
    "RewardResult",
    "RewardSpec",
    "RewardSpecError",
    "ScoreBatch",
    "WeightedReward",
    "as_result",
    "build_reward",
    "exact_reward",
    "extract",
    "format_reward",
    "gsm8k_reward",
    "math_reward",
    "numeric_reward",
    "overlong_penalty",
    "resolve_reward",
    "rgym_reward",
]
