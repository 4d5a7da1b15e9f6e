"""`import reward` stays light: no torch, and math-verify / reasoning-gym only load when a reward needs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_reward_loads_no_heavy_module():
    code = (
        "import sys, reward, reward.executor\n"
        "heavy = {'torch', 'math_verify', 'sympy', 'reasoning_gym', 'ray', 'vllm', 'transformers'}\n"
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"


def test_public_api():
    import reward

    assert reward.OUTCOMES == ("correct", "wrong", "unparsable", "timeout", "error")
    assert reward.EXTRACTIONS == ("boxed", "boxed_or_last_number", "gsm8k", "answer_tag", "raw")
    assert all(hasattr(reward, name) for name in reward.__all__)
