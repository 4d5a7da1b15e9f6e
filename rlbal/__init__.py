"""rlbal: adaptive prompt weighting and rollout budgets for GRPO-family RL."""

__version__ = "0.1.0"
