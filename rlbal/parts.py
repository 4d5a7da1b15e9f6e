"""`Parts`: everything the training loop touches, and the run-level rules it asks them (when to evaluate,
checkpoint, stop on failing rewards). Built by `rlbal.assemble.build_parts` (local) or
`rlbal.ray.build_ray_parts` (the engine and learner are Ray groups); the loop (`rlbal.driver`) only reads them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reward.executor import RewardScorer
from rlbal.config import Config
from rlbal.controllers import Controllers, GroupFilter
from rlbal.data import PromptStream
from rlbal.errors import RewardError
from rlbal.learner.contracts import PolicyLearner
from rlbal.logging import MetricsLogger
from rlbal.rollout.engine import RolloutEngine


@dataclass
class Parts:
    """Everything the loop touches, each behind its contract (a Protocol or a concrete torch-free controller).
    Built by `rlbal.assemble.build_parts`; the Ray orchestrator builds the same around its engine and learner."""

    cfg: Config
    source: PromptStream
    controllers: Controllers
    engine: RolloutEngine  # a local engine, or the Ray rollout group
    rewards: RewardScorer
    filter: GroupFilter
    learner: PolicyLearner  # rlbal.learner.Learner, or the Ray learner group
    tokenizer: Any
    run_dir: Path
    is_main: bool = True
    barrier: Callable[[], None] = lambda: None
    evaluator: Callable[[int], dict[str, float]] | None = None
    logger: MetricsLogger | None = None
    failed_reward_steps: int = 0  # consecutive steps in which every completion's reward raised or timed out

    def check_rewards(self, step: int, metrics: dict[str, float]) -> None:
        """Stop the run (RewardError) after reward.max_failed_steps consecutive steps in which every
        completion's reward raised or timed out: training on nothing but failure scores is garbage."""
        n = metrics.get("reward/completions", 0.0)
        error, timeout = metrics.get("reward/outcome/error", 0.0), metrics.get("reward/outcome/timeout", 0.0)
        self.failed_reward_steps = self.failed_reward_steps + 1 if n and error + timeout == n else 0
        limit = self.cfg.reward.max_failed_steps
        if limit and self.failed_reward_steps >= limit:
            raise RewardError(
                f"reward.fn={self.cfg.reward.fn!r} failed on every completion for {limit} consecutive "
                f"steps (step {step}: {error:.0f} error, {timeout:.0f} timeout of {n:.0f}; the first "
                "reason of each step is in the warnings above); fix the reward, raise "
                "reward.timeout_s, or set reward.max_failed_steps (0 = never stop)"
            )

    @property
    def pad_id(self) -> int:
        return int(self.tokenizer.pad_token_id)

    def should_eval(self, step: int) -> bool:
        every = self.cfg.eval.every
        return self.evaluator is not None and ((every and step % every == 0) or step == self.cfg.run.max_steps)

    def should_checkpoint(self, step: int) -> bool:
        every = self.cfg.checkpoint.every
        return (every and step % every == 0) or step == self.cfg.run.max_steps

    def open_logger(self, start_step: int) -> None:
        self.logger = MetricsLogger.from_config(self.cfg, self.run_dir, start_step=start_step, enabled=self.is_main)

    def close(self) -> None:
        if self.logger is not None:
            self.logger.close()
        self.rewards.close()
        self.engine.shutdown()
