"""benchmarks/gpu/run.sh in its CPU mode: the same steps as on the GPU (model built from config, the GPU-marked
tests, GRPO and GDRO through the CLI, bench_trl.py with the floor), small, here. ~1-2 minutes."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_cpu_mode_runs_every_part_and_writes_the_summary(tmp_path):
    if not (ROOT / ".cache" / "gpu-carry" / "train.jsonl").is_file():
        subprocess.run(
            [
                str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv").is_dir() else "python3",
                "benchmarks/gpu/gpu_run.py",
                "prepare",
            ],
            cwd=ROOT,
            check=True,
            timeout=300,
        )
    env = {**os.environ, "OUT": str(tmp_path / "out"), "RLBAL_GPU_WORK": str(tmp_path / "work")}
    proc = subprocess.run(
        ["bash", "benchmarks/gpu/run.sh", "--cpu"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    summary = json.loads((tmp_path / "out" / "gpu_summary.json").read_text())
    assert summary["mode"] == "cpu" and summary["device"] == "cpu"
    # the tiny sizes: 512 x 128 tied embeddings + 2 layers of 147,712 + the final norm (tests/rollout)
    assert summary["model"]["parameters"] == 361_088
    assert summary["model"]["sft_loss_last"] < summary["model"]["sft_loss_first"]
    # 6 tests in tests/gpu (one parametrised twice) + 4 in tests/algo/test_device.py, all skipped without CUDA
    assert summary["tests"] == {"returncode": 0, "skipped": 10}
    for name in ("grpo", "gdro"):
        run = summary["train"][name]
        assert run["returncode"] == 0 and run["steps"] == 2 and run["loss_finite"]
        assert run["step_s"] >= run["generate_s"] + run["update_s"] > 0
    rows = {r["framework"]: r for r in summary["trl"]["rows"]}
    assert rows["rlbal"]["devices"] == {"learner": "cpu", "engine": "cpu"}
    floor = rows["rlbal"]["floor"]
    assert floor["step_s"] == pytest.approx(floor["generate_s"] + floor["fwd_bwd_s"])
    assert any(line.startswith("floor, rlbal hf") for line in summary["trl"]["report"])
    assert "| grpo | 0 | 2 |" in (tmp_path / "out" / "gpu_summary.md").read_text()
