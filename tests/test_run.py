"""End-to-end training through the real CLI on the tiny model, and exact resume after a kill."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rlbal.assets import resolve_model

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def small(out: Path, name: str, *extra: str) -> list[str]:
    """A run sized for tests: tiny SFT model, transformers engine, 8 prompts x 4 rollouts x 16 tokens."""
    return [
        "rollout.engine=hf",
        "model.path=tiny-sft",
        "train.prompts_per_step=8",
        "rollout.max_new_tokens=16",
        "data.size=64",
        "eval.size=2",
        "eval.k=2",
        "reward.workers=1",
        "logging.progress=false",
        f"run.output_dir={out}",
        f"run.name={name}",
        *extra,
    ]


def train_cmd(recipe: str, args: list[str]) -> list[str]:
    return [sys.executable, "-m", "rlbal.train", str(ROOT / "recipes" / recipe), *args]


def rows(run_dir: Path) -> dict[int, dict]:
    """Training rows of metrics.jsonl by step (eval-only rows merged in)."""
    out: dict[int, dict] = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        out.setdefault(r["step"], {}).update(r)
    return out


def test_cli_run_leaves_metrics_tensorboard_checkpoint_and_plots(tmp_path):
    # 3 prompts per level = 9 in all at 8 per step: step 2 straddles the epoch boundary and draws prompt 1
    # twice (PromptSource seed 0 order: [4 5 2 6 3 8 7 0 | 1] + [1 3 6 7 8 0 4 ...]); both copies must train.
    proc = subprocess.run(
        train_cmd("gdro.yaml", small(tmp_path, "e2e", "run.max_steps=3", "data.size=3")),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "e2e"
    assert (run / "config.yaml").is_file()
    steps = rows(run)
    assert sorted(steps) == [0, 1, 2, 3]  # step 0 = eval before training
    for s in (1, 2, 3):
        r = steps[s]
        # Rollout-GDRO keeps the budget exactly: 8 prompts x n_bar 4 = 32 rollouts every step
        assert r["rollout/num_sequences"] == 32 and r["controller/rollout_gdro/alloc/mean"] == 4.0
        assert set(k.split("/")[0] for k in r) >= {"reward", "rollout", "loss", "learner", "controller", "timing"}
    assert "eval/pass@2" in steps[0] and "eval/pass@2" in steps[3]
    assert list((run / "tb").glob("events.out.tfevents.*"))
    ckpt = run / "checkpoints" / "step_3"
    assert (ckpt / "COMPLETE").is_file()
    trained = load_file(str(next((ckpt / "model").glob("*.safetensors"))))
    initial = load_file(str(next(resolve_model("tiny-sft").glob("*.safetensors"))))
    changed = [k for k in initial if k in trained and not torch.equal(initial[k], trained[k])]
    assert len(changed) >= len(initial) // 2, "training must move the weights"
    pngs = list((run / "plots").glob("*.png"))
    assert pngs and all(p.stat().st_size > 5000 for p in pngs)


def test_kill_and_resume_equals_an_uninterrupted_run(tmp_path):
    args = ["run.max_steps=4", "checkpoint.every=2", "checkpoint.keep_last=3", "eval.every=0"]
    straight = subprocess.run(
        train_cmd("gdro.yaml", small(tmp_path, "straight", *args)),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert straight.returncode == 0, straight.stderr[-3000:]

    cmd = train_cmd("gdro.yaml", small(tmp_path, "killed", *args))
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = tmp_path / "killed" / "checkpoints" / "step_2" / "COMPLETE"
    deadline = time.time() + 600
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)  # mid step 3: the newest complete checkpoint is step 2
    proc.wait()
    assert marker.exists()
    resumed = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stdout and "step_2" in resumed.stdout

    a, b = rows(tmp_path / "straight"), rows(tmp_path / "killed")
    assert sorted(a) == sorted(b) == [0, 1, 2, 3, 4]
    for s in (1, 2, 3, 4):
        for key in a[s]:
            if key.startswith(
                ("controller/", "rollout/", "reward/mean", "reward/correct_rate", "filter/kept", "reward/total/")
            ):  # reward/total/* continue from the checkpoint
                assert a[s][key] == b[s][key], (s, key)  # same prompts, same bins, same rollout counts
        assert abs(a[s]["loss/total"] - b[s]["loss/total"]) < 1e-6
        assert abs(a[s]["learner/grad_norm"] - b[s]["learner/grad_norm"]) < 1e-5
    state_a = json.loads((tmp_path / "straight/checkpoints/step_4/trainer_state.json").read_text())
    state_b = json.loads((tmp_path / "killed/checkpoints/step_4/trainer_state.json").read_text())
    assert state_a["controllers"] == state_b["controllers"]
    assert state_a["source"] == state_b["source"]  # same data-order cursor


def test_bad_model_path_fails_before_training(tmp_path):
    proc = subprocess.run(
        train_cmd("grpo.yaml", small(tmp_path, "bad", "model.path=/no/such/model")),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "/no/such/model" in proc.stderr.strip().splitlines()[-1]


# ----------------------------------------------------------------------------- damaged checkpoints

DAMAGED_ARGS = [
    "run.max_steps=2",
    "checkpoint.every=1",
    "checkpoint.keep_last=2",
    "eval.every=0",
    "logging.plots=false",
]


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory):
    """A finished 2-step run with complete checkpoints step_1 and step_2: each test damages a copy of it."""
    out = tmp_path_factory.mktemp("undamaged")
    proc = subprocess.run(
        train_cmd("gdro.yaml", small(out, "run", *DAMAGED_ARGS)), cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out / "run"


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _overwrite_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 64] = b"\xff" * 64  # NaN/garbage weights of the same size: only the checksum sees it
    path.write_bytes(bytes(data))


# (case, file inside step_2, damage, what the warning says about it given the file's size before and after)
DAMAGES = [
    ("model-truncated", "model/model.safetensors", _truncate, "{rel} has {after} bytes, expected {before}"),
    ("optimizer-truncated", "optimizer.safetensors", _truncate, "{rel} has {after} bytes, expected {before}"),
    ("trainer-state-truncated", "trainer_state.json", _truncate, "{rel} has {after} bytes, expected {before}"),
    ("rng-emptied", "rng.json", lambda p: p.write_text(""), "{rel} has {after} bytes, expected {before}"),
    (
        "weights-overwritten",
        "model/model.safetensors",
        _overwrite_middle,
        "{rel} does not match its sha256 (bytes changed since the save)",
    ),
]


@pytest.mark.parametrize("case,rel,damage,why", DAMAGES, ids=[d[0] for d in DAMAGES])
def test_damaged_newest_checkpoint_falls_back_to_the_previous_one(two_checkpoints, tmp_path, case, rel, damage, why):
    from rlbal.learner.checkpoint import verify_checkpoint

    run = tmp_path / "run"
    shutil.copytree(two_checkpoints, run)
    file = run / "checkpoints" / "step_2" / rel
    before = file.stat().st_size
    damage(file)
    after = file.stat().st_size
    proc = subprocess.run(
        train_cmd("gdro.yaml", small(tmp_path, "run", *DAMAGED_ARGS)),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("rlbal: warning:")]
    assert warnings == [
        f"rlbal: warning: checkpoint {run / 'checkpoints' / 'step_2'} is damaged "
        f"({why.format(rel=rel, before=before, after=after)}); resuming from the "
        "previous one, step_1"
    ]
    assert f"[rlbal] resumed from {run / 'checkpoints' / 'step_1'} at step 1" in proc.stdout
    # step 2 again from step 1: the same row as the undamaged run, counters included; step_2 is whole again
    a, b = rows(two_checkpoints)[2], rows(run)[2]
    for key in a:
        if key.startswith(("controller/", "rollout/", "reward/mean", "reward/total/", "reward/completions")):
            assert a[key] == b[key], key
    assert abs(a["loss/total"] - b["loss/total"]) < 1e-6
    assert b["reward/total/correct"] + b["reward/total/wrong"] + b["reward/total/unparsable"] > b["reward/completions"]
    assert verify_checkpoint(run / "checkpoints" / "step_2") is None


def test_no_checkpoint_verifies_is_one_error_line(two_checkpoints, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(two_checkpoints, run)
    (run / "checkpoints" / "step_2" / "rng.json").write_text("")
    _truncate(run / "checkpoints" / "step_1" / "trainer_state.json")
    size = (two_checkpoints / "checkpoints" / "step_1" / "trainer_state.json").stat().st_size
    rng = (two_checkpoints / "checkpoints" / "step_2" / "rng.json").stat().st_size
    proc = subprocess.run(
        train_cmd("gdro.yaml", small(tmp_path, "run", *DAMAGED_ARGS)),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines() == [
        f"rlbal: checkpoint error: no checkpoint in {run / 'checkpoints'} verifies (step_2: rng.json has 0 bytes, "
        f"expected {rng}; step_1: trainer_state.json has {size // 2} bytes, expected {size}); move them away or start "
        "over with run.resume=never"
    ]
