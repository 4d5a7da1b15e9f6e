"""Import layers: the core imports without Ray, vLLM or DeepSpeed; the controllers and rewards without torch."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

BLOCKER = """
import sys
class Block:
    def __init__(self, names): self.names = names
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in self.names:
            raise ImportError(f'blocked import of {{name}}')
        return None
sys.meta_path.insert(0, Block({blocked!r}))
import {module}
print('ok')
"""


@pytest.mark.parametrize(
    "module,blocked",
    [
        ("rlbal", ["ray", "vllm", "deepspeed"]),
        ("rlbal.config", ["torch", "ray", "vllm", "deepspeed", "transformers"]),
        ("rlbal.controllers", ["torch", "ray", "vllm", "deepspeed", "transformers", "pydantic"]),
        ("rlbal.cli", ["torch", "ray", "vllm", "deepspeed", "transformers"]),
        ("rlbal.algo", ["ray", "vllm", "deepspeed"]),
        ("rlbal.batch", ["ray", "vllm", "deepspeed"]),
        ("rlbal.rollout", ["ray", "vllm", "deepspeed"]),
        ("rlbal.data", ["ray", "vllm", "deepspeed"]),
        ("rlbal.driver", ["ray", "vllm", "deepspeed"]),
        ("reward", ["torch", "ray", "vllm", "deepspeed"]),
    ],
)
def test_import_layers(module, blocked):
    code = BLOCKER.format(blocked=set(blocked), module=module)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
