"""What a person sees: progress lines without a terminal, a bar on one, milestones, quiet third-party logs,
the end summary; and a real 3-step quickstart run piped to a file (vLLM)."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rlbal.console import HARMLESS, Console, ThirdPartyNoise, eval_line, step_line

ROOT = Path(__file__).resolve().parents[1]


def metrics(reward: float = 0.25, sec: float = 2.0) -> dict[str, float]:
    """A training step: 6 prompts x 20 rollouts in 3 bins, Rollout-GDRO logging n only for non-empty bins."""
    return {
        "reward/mean": reward,
        "reward/correct_rate": 0.2,
        "rollout/num_sequences": 20.0,
        "rollout/num_prompts": 6.0,
        "controller/classifier/count/bin_0": 4.0,
        "controller/classifier/count/bin_1": 0.0,
        "controller/classifier/count/bin_2": 2.0,
        "controller/rollout_gdro/n/bin_0": 2.0,
        "controller/rollout_gdro/n/bin_2": 6.0,
        "timing/step": sec,
    }


def test_step_line_is_exact():
    # 20 / 6 = 3.33 rollouts per prompt; bin 1 is empty: its rollouts are '-'; ETA = 2.5 s x (150 - 12) = 5m45s
    assert step_line(12, 150, metrics(), 2.5) == (
        "step  12/150  reward 0.250  correct 0.20  rollouts 3.3/prompt  "
        "prompts/bin 4 0 2  n/bin 2.0 - 6.0  2.5 s/step  ETA 5m45s"
    )
    assert step_line(150, 150, {"reward/mean": 0.5, "reward/correct_rate": 0.5}, 1.0) == (
        "step 150/150  reward 0.500  correct 0.50  1.0 s/step"
    )  # no controllers, last step: no ETA


def test_eval_line_lists_levels():
    m = {
        "eval/mean@4": 0.2012,
        "eval/level_1/mean@4": 0.375,
        "eval/level_2/mean@4": 0.028,
        "eval/pass@4": 0.39,
        "eval/greedy/pass@1": 0.25,
        "eval/level_1/pass@4": 0.6,
    }
    assert eval_line(50, m) == (
        "eval step 50: mean@4 0.201 (level_1 0.375, level_2 0.028)  greedy pass@1 0.250  pass@4 0.390"
    )
    assert eval_line(3, {"reward/mean": 1.0}) is None


def test_console_without_a_terminal_prints_every_nth_step_evals_and_milestones():
    out = io.StringIO()
    console = Console(30, stream=out)  # every 0 = auto: ceil(30 / 15) = 2
    console.say("ready")
    for step in range(1, 31):
        m = metrics(sec=2.0 if step <= 10 else 4.0)
        if step == 10:
            m.update({"eval/mean@4": 0.5})
        console.step(step, m)
        if step == 10:  # the driver writes a checkpoint after its step's row (rlbal.driver.log_eval_checkpoint)
            console.say("checkpoint step 10 written to runs/x/checkpoints/step_10")
    lines = out.getvalue().splitlines()
    steps = [int(re.match(r"\[rlbal\] step +(\d+)/30", line)[1]) for line in lines if " step " in line[:14]]
    assert steps == [1] + list(range(2, 31, 2))
    assert lines[0] == "[rlbal] ready"
    # step 1: 2.0 s/step so far, 29 steps left -> ETA 58s; after step 10 the line, then the eval, then the checkpoint
    assert lines[1].endswith("2.0 s/step  ETA 58s")
    i = lines.index(next(line for line in lines if line.startswith("[rlbal] step 10/30")))
    assert lines[i + 1 : i + 3] == [
        "[rlbal] eval step 10: mean@4 0.500",
        "[rlbal] checkpoint step 10 written to runs/x/checkpoints/step_10",
    ]
    # step 12: mean of 10 x 2.0 s and 2 x 4.0 s = 2.33 s/step, 18 steps left -> 42s
    assert next(line for line in lines if "step 12/30" in line).endswith("2.3 s/step  ETA 42s")
    silent = io.StringIO()
    Console(3, stream=silent, enabled=False).step(1, metrics())
    assert silent.getvalue() == ""


def test_console_on_a_terminal_draws_a_bar():
    import pty

    code = (
        "from rlbal.console import Console\n"
        "c = Console(4, every=1)\n"
        "c.say('engine up')\n"
        "for s in range(1, 5): c.step(s, {'reward/mean': 0.125 * s, 'timing/step': 0.01})\n"
        "c.close()\n"
    )
    pid, fd = pty.fork()
    if pid == 0:  # child: stdout is the terminal
        os.execv(sys.executable, [sys.executable, "-c", code])
    chunks = []
    while True:
        try:
            data = os.read(fd, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.waitpid(pid, 0)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b"".join(chunks).decode(errors="replace"))
    assert "[rlbal] engine up" in text
    assert "4/4" in text and "reward 0.500" in text and "eta" in text
    assert "[rlbal] step" not in text  # the bar replaces the progress lines


def test_harmless_filter_drops_only_the_listed_messages():
    noise = ThirdPartyNoise()

    def passes(msg: str) -> bool:
        return noise.filter(logging.LogRecord("vllm.x", logging.WARNING, "f.py", 1, msg, None, None))

    for msg in (
        "RotaryEmbedding: Failed to load weights",
        "libtcmalloc is not found in LD_PRELOAD. For best ...",
        "Setting accelerator to CPU. If you have GPU or other accelerator, we were unable to detect it.",
        "OMP_NUM_THREADS=2 is set; leaving Torch threads at 2 for serving. Multi-threaded torch CPU ops ...",
        "Unknown vLLM environment variable detected: VLLM_DIST_IDENT",
    ):
        assert not passes(msg), msg
    for msg in (
        "Failed to load weights of layer q_proj",
        "KV cache is full: preempting request 3",
        "Sampling parameter top_k is ignored",
        "OMP_NUM_THREADS is not set; using all cores",
        "Unknown vLLM environment variable detected: VLLM_ATTENTION_BACKND",
    ):
        assert passes(msg), msg
    assert all(reason for _, reason in HARMLESS)


def test_quiet_third_party_sets_vllm_to_warning_and_verbose_leaves_everything():
    code = (
        "import json, os, sys\n"
        "from rlbal.console import quiet_third_party\n"
        "quiet_third_party(sys.argv[1] == 'verbose')\n"
        "keys = ['VLLM_LOGGING_CONFIG_PATH', 'VLLM_LOGGING_LEVEL', 'HF_HUB_DISABLE_PROGRESS_BARS',\n"
        "        'TORCH_CPP_LOG_LEVEL']\n"
        "print(json.dumps({k: os.environ.get(k) for k in keys}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VLLM_LOGGING", "HF_HUB_DISABLE", "TORCH_CPP"))}
    quiet = json.loads(
        subprocess.run(
            [sys.executable, "-c", code, "quiet"], capture_output=True, text=True, cwd=ROOT, env=env, check=True
        ).stdout
    )
    assert quiet["VLLM_LOGGING_LEVEL"] == "WARNING" and quiet["HF_HUB_DISABLE_PROGRESS_BARS"] == "1"
    assert quiet["TORCH_CPP_LOG_LEVEL"] == "ERROR"
    config = json.loads(Path(quiet["VLLM_LOGGING_CONFIG_PATH"]).read_text())
    assert config["loggers"]["vllm"]["level"] == "WARNING" and config["handlers"]["vllm"]["filters"] == ["harmless"]
    loud = json.loads(
        subprocess.run(
            [sys.executable, "-c", code, "verbose"], capture_output=True, text=True, cwd=ROOT, env=env, check=True
        ).stdout
    )
    assert loud == {k: None for k in loud}


# ----------------------------------------------------------------------------- a real run, piped


def _train(tmp_path: Path, name: str, *extra: str) -> tuple[str, Path]:
    cmd = [
        sys.executable,
        "-m",
        "rlbal.cli",
        "train",
        "recipes/quickstart.yaml",
        "run.max_steps=3",
        "eval.size=8",
        f"run.output_dir={tmp_path}",
        f"run.name={name}",
        *extra,
    ]
    proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:]
    return proc.stdout, tmp_path / name


@pytest.mark.vllm
@pytest.mark.slow
def test_quickstart_piped_shows_progress_and_summary_and_no_vllm_info(tmp_path):
    text, run = _train(tmp_path, "piped")
    lines = text.splitlines()
    rows = {
        r["step"]: r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "timing/step" in r
    }
    assert lines[0] == (
        f"[rlbal] run piped: 3 steps x 64 prompts x 8 rollouts (mean), grpo + Prompt-GDRO + Rollout-GDRO "
        f"on tiny-sft-400, vllm engine, torch learner -> {run}"
    )
    ready = next(i for i, line in enumerate(lines) if line.startswith("[rlbal] ready in "))
    assert re.fullmatch(r"\[rlbal\] ready in \d+\.\d s: vllm engine up, 800 training prompts", lines[ready])
    assert re.fullmatch(
        r"\[rlbal\] eval step 0: mean@4 \d\.\d{3} \(level_1 \d\.\d{3}, level_2 \d\.\d{3}\)  "
        r"greedy pass@1 \d\.\d{3}  pass@4 \d\.\d{3}",
        lines[ready + 1],
    )
    assert [line for line in lines[:ready] if not line.startswith("[rlbal] ")] == []  # only rlbal's own lines
    progress = [line for line in lines if line.startswith("[rlbal] step ")]
    assert len(progress) == 3  # 3 steps: every step (auto cadence = 1)
    for step, line in enumerate(progress, start=1):
        # every prompt is new at these steps (64 of 800 per step): all unseen prompts sit in bin 0 (hardest)
        m = re.fullmatch(
            rf"\[rlbal\] step {step}/3  reward (\d\.\d{{3}})  correct (\d\.\d\d)  rollouts 8\.0/prompt  "
            r"prompts/bin 64 0 0 0 0  n/bin 8\.0 - - - -  \d+\.\d s/step(  ETA \d+s)?",
            line,
        )
        assert m, line
        assert m[1] == f"{rows[step]['reward/mean']:.3f}" and m[2] == f"{rows[step]['reward/correct_rate']:.2f}"
    path = re.escape(f"{run}/checkpoints/step_3")
    saved = re.compile(rf"\[rlbal\] checkpoint step 3 written to {path} \(\d+\.\d s\)")
    assert any(saved.fullmatch(line) for line in lines), lines
    done = next(i for i, line in enumerate(lines) if line.startswith("[rlbal] done: 3 steps in "))
    summary = "\n".join(lines[done:])
    assert (
        "  held-out mean@4 (16 prompts x 4 samples, T=0.6):\n    step  mean@4  level_1  level_2\n       0 " in summary
    )
    assert f"  tensorboard       tensorboard --logdir {run}/tb" in summary
    assert f"  plots             {run}/plots/summary.png (+ " in summary
    assert f"  next              rlbal eval {run} --k 8" in summary
    r1, r3 = rows[1]["reward/mean"], rows[3]["reward/mean"]
    assert f"  train reward      {r1:.3f} (step 1) -> {r3:.3f} (step 3)" in summary
    # nothing from vLLM at INFO, no per-step reload block, no progress bars, no C++ warnings
    assert not [line for line in lines if re.search(r"\bINFO\b|Reloading|RotaryEmbedding|it/s\]|^\[W", line)]
    assert len(lines) < 30, text
    completions = [json.loads(line) for line in (run / "completions.jsonl").read_text().splitlines()]
    assert [c["step"] for c in completions] == [1, 2, 3]
    assert all(
        len(c["prompt_id"]) == len(c["bin"]) == len(c["n"]) == 64 and len(c["samples"]) == 4 for c in completions
    )
    assert (run / "plots" / "summary.png").stat().st_size > 20_000


@pytest.mark.vllm
@pytest.mark.slow
def test_verbose_brings_the_vllm_logs_back(tmp_path):
    text, _ = _train(tmp_path, "loud", "run.max_steps=1", "--verbose")
    assert re.search(r"INFO .*Reloading weights inplace", text)
    assert "RotaryEmbedding: Failed to load weights" in text
    assert "[rlbal] step 1/1 " in text
