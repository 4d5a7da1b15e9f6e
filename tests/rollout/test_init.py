"""Import hygiene: `import rlbal.rollout` (and the engine modules themselves) load neither vLLM nor Ray."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("module", ["rlbal.rollout", "rlbal.rollout.vllm_engine", "rlbal.rollout.actor"])
def test_importing_does_not_load_vllm_or_ray(module):
    code = (
        f"import sys, {module}\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('vllm', 'ray'))\n"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
