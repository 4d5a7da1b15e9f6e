"""Fixtures for the Ray tests: one local Ray cluster per test session, small run configs, tiny models.

The session cluster (`ray_session`, in tests/conftest.py) declares 4 logical CPUs on the 2-core machine
(fractional actors: 2 rollout + 2 learner actors at 0.5 CPU each fit twice over) and has no dashboard. Each test
that starts a run tears its actors down (`parts.close()`), so tests do not leak bundles into each other.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def small_overrides(out: Path, name: str, *extra: str) -> list[str]:
    """A few GDRO steps sized for 2 cores: 8 prompts x 4 rollouts x 16 tokens, tiny-sft, no plots/TB."""
    return [
        f"run.name={name}",
        f"run.output_dir={out}",
        "run.max_steps=3",
        "run.resume=never",
        "train.prompts_per_step=8",
        "rollout.max_new_tokens=16",
        "data.size=64",
        "eval.size=2",
        "eval.k=2",
        "reward.workers=1",
        "logging.plots=false",
        "logging.tensorboard=false",
        "logging.progress=false",
        "checkpoint.every=0",
        "learner.lr=2e-3",
        *extra,
    ]


def read_metrics(run_dir: Path) -> dict[int, dict[str, float]]:
    """step -> metrics of a run directory's metrics.jsonl (the last line of a step wins, like a resumed run)."""
    out = {}
    for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        out[row["step"]] = row
    return out


@pytest.fixture(scope="session")
def overrides():
    return small_overrides


@pytest.fixture
def metrics_of():
    return read_metrics
