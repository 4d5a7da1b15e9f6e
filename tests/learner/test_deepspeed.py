"""accelerate + DeepSpeed ZeRO-2 with 2 CPU processes trains the same as one plain process on the same data, starting
from an empty asset cache (what a user's first multi-process launch on a new machine meets)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.deepspeed, pytest.mark.slow]


def _losses(run_dir: Path) -> dict[int, dict]:
    out = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        if "loss/total" in r:
            out[r["step"]] = r
    return out


def test_zero2_two_processes_match_single_process(tmp_path):
    """The 2-rank launch builds the tiny-sft asset into an empty RLBAL_CACHE (each rank before its process
    group exists; under one, transformers' save_pretrained writes nothing on rank 1), then trains."""
    args = [
        "rollout.engine=hf",
        "model.path=tiny-sft",
        "train.prompts_per_step=8",
        "rollout.max_new_tokens=16",
        "data.size=64",
        "eval.size=1",
        "reward.workers=1",
        "logging.progress=false",
        "logging.plots=false",
        "run.max_steps=3",
        f"run.output_dir={tmp_path}",
    ]
    recipe = str(ROOT / "recipes" / "gdro.yaml")
    cache = tmp_path / "cache"  # empty: the launch must build the assets
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RLBAL_CACHE": str(cache)}
    accelerate = Path(sys.executable).with_name("accelerate")
    with socket.socket() as sock:  # a free rendezvous port: the default 29500 may be taken by another job
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ds = subprocess.run(
        [
            str(accelerate),
            "launch",
            "--config_file",
            str(ROOT / "launch/accelerate/zero2.yaml"),
            "--main_process_port",
            str(port),
            "-m",
            "rlbal.train",
            recipe,
            *args,
            "run.name=ds",
            "learner.backend=accelerate",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert ds.returncode == 0, ds.stderr[-4000:]
    built = sorted(p.name for p in (cache / "assets").iterdir() if not p.name.startswith("."))
    assert [name.rsplit("-", 1)[0] for name in built] == ["tiny-llama", "tiny-llama-sft200"], built
    single = subprocess.run(
        [sys.executable, "-m", "rlbal.train", recipe, *args, "run.name=single"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert single.returncode == 0, single.stderr[-4000:]
    a, b = _losses(tmp_path / "ds"), _losses(tmp_path / "single")
    assert sorted(a) == sorted(b) == [1, 2, 3]
    for step in a:
        assert a[step]["reward/mean"] == b[step]["reward/mean"]  # same weights -> same samples on every rank
        assert abs(a[step]["loss/total"] - b[step]["loss/total"]) < 1e-6
        assert abs(a[step]["learner/grad_norm"] - b[step]["learner/grad_norm"]) < 1e-4
    assert (tmp_path / "ds" / "checkpoints" / "step_3" / "deepspeed").is_dir()
