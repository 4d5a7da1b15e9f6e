"""Fixtures shared by the reward tests."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session", autouse=True)
def repo_root_on_sys_path():
    """Worker processes import `tests.reward.faulty_rewards` by name through the sys.path they inherit; under
    `python -m pytest` the repository root is on it, under the `pytest` console script it is not."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(ROOT))
        yield
