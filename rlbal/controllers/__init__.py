"""Torch-free adaptive controllers for GRPO-family training: import them into any trainer (stdlib + numpy only).

    DifficultyClassifier  windowed pass@k per prompt id -> difficulty class (before generation)
    PromptGDRO            exponential-weights adversary over classes -> advantage multipliers (or sampling)
    RolloutGDRO           per-class rollout counts under an exact mean budget (bandit, square-root rule, knapsack)
    BinSampler            the prompt pool grouped by class, for Prompt-GDRO's sampling form
    Controllers           the three together: decide(ids) -> Allocation, observe(PromptResult)
    bapo_search           BAPO adaptive clip bounds for one update
    GroupFilter           online difficulty filtering with batch refill

Every stateful controller has state_dict() / load_state_dict() (JSON-serialisable, config-checked) and
metrics() (flat namespaced floats). See docs/controllers.md.
"""

from rlbal.controllers.bapo import BapoBounds, BapoConfig, bapo_search
from rlbal.controllers.classifier import ClassifierConfig, DifficultyClassifier, KeyIndex
from rlbal.controllers.composite import Controllers
from rlbal.controllers.filtering import FilterConfig, GroupFilter
from rlbal.controllers.prompt_gdro import PromptGDRO, PromptGDROConfig
from rlbal.controllers.records import (
    LOSS_SIGNALS,
    REWARD_SIGNALS,
    Allocation,
    PromptResult,
    clipped_surrogate_signal,
    reward_signal,
)
from rlbal.controllers.rollout_gdro import RolloutGDRO, RolloutGDROConfig
from rlbal.controllers.sampling import BinSampler

__all__ = [
    "Allocation",
    "BapoBounds",
    "BinSampler",
    "BapoConfig",
    "ClassifierConfig",
    "Controllers",
    "DifficultyClassifier",
    "FilterConfig",
    "GroupFilter",
    "KeyIndex",
    "LOSS_SIGNALS",
    "PromptGDRO",
    "PromptGDROConfig",
    "PromptResult",
    "REWARD_SIGNALS",
    "RolloutGDRO",
    "RolloutGDROConfig",
    "bapo_search",
    "clipped_surrogate_signal",
    "reward_signal",
]
