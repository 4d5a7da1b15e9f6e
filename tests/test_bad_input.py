"""Bad input, as a demanding new user gives it: every command prints exactly one line naming the culprit
(file, row, field, key) and exits with status 2; no traceback unless --debug.

The table runs each case through `rlbal.cli.main` (what the `rlbal` script calls) in this process; training
cases run twice, with and without --dry-run, so every check happens before anything heavy loads. The
slow tests at the end run the real `rlbal` / `python -m rlbal.train` processes.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bad_input_cases import OTHER, PLOT, TRAIN

ROOT = Path(__file__).resolve().parents[1]
RLBAL = str(Path(sys.executable).with_name("rlbal"))

REWARDS = """
NOT_CALLABLE = 3
def one_arg(completion):
    return 1.0
def always_raises(completion, answer, **meta):
    raise RuntimeError("boom")
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory, tiny_path):
    """Bad recipes, data files, model folders and rewards, and a run directory with one checkpoint."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from rlbal.config import load_config, save_resolved
    from rlbal.learner.checkpoint import write_checkpoint

    root = tmp_path_factory.mktemp("bad")
    d = root / "data"
    d.mkdir()
    (d / "empty.jsonl").write_text("")
    (d / "broken.jsonl").write_text('{"prompt": "1+1", "answer": "2"}\n{"prompt": "2+2", "answer": \n')
    (d / "missing.jsonl").write_text('{"prompt": "1+1"}\n')
    (d / "null.jsonl").write_text('{"prompt": "1+1", "answer": null}\n')
    (d / "roles.jsonl").write_text('{"prompt": [{"role": "robot", "content": "hi"}], "answer": "2"}\n')
    (d / "nouser.jsonl").write_text('{"prompt": [{"role": "system", "content": "hi"}], "answer": "2"}\n')
    (d / "array.jsonl").write_text("[1, 2]\n")
    (d / "nan.jsonl").write_text('{"prompt": "1+1", "answer": NaN}\n')
    (d / "latin1.jsonl").write_bytes('{"prompt": "café", "answer": "2"}\n'.encode("latin-1"))
    (d / "dup.jsonl").write_text(
        '{"id": 7, "prompt": "1+1", "answer": "2"}\n{"id": 7, "prompt": "2+2", "answer": "4"}\n'
    )
    (d / "data.csv").write_text("prompt,answer\n1+1,2\n")
    (d / "emptydir").mkdir()
    (d / "garbage.parquet").write_bytes(b"PAR1 not really a parquet file")
    pq.write_table(pa.table({"prompt": [1, 2], "answer": ["2", "4"]}), d / "types.parquet")
    pq.write_table(pa.table({"prompt": ["1+1", "2+2"], "answer": [2.0, float("nan")]}), d / "nan.parquet")
    (d / "garbage.jsonl.gz").write_bytes(b"not gzip at all")
    (d / "truncated.jsonl.gz").write_bytes(gzip.compress(b'{"prompt": "1+1", "answer": "2"}\n' * 50)[:40])
    (d / "object.json").write_text('{"prompt": "1+1"}')
    m = root / "models"
    m.mkdir()
    (m / "empty").mkdir()
    (m / "noweights").mkdir()
    shutil.copy(tiny_path / "config.json", m / "noweights")
    shutil.copytree(tiny_path, m / "truncated")
    (m / "truncated" / "model.safetensors").write_bytes((tiny_path / "model.safetensors").read_bytes()[:5000])
    shutil.copytree(tiny_path, m / "badconfig")
    (m / "badconfig" / "config.json").write_text("{oops")
    r = root / "rewards"
    r.mkdir()
    (r / "my_rewards.py").write_text(REWARDS)
    (r / "needs_dep.py").write_text("import nonexistent_dependency_xyz\n")
    (root / "dup.yaml").write_text("run:\n  max_steps: 3\nalgo:\n  clip_high: 0.3\nrun:\n  seed: 1\n")
    (root / "latin1.yaml").write_bytes("run:\n  name: café\n".encode("latin-1"))
    (root / "list.yaml").write_text("- 1\n- 2\n")
    (root / "half").mkdir()
    cfg = load_config(
        overrides=[
            f"run.output_dir={root}",
            "run.name=run",
            f"model.path={tiny_path}",
            "rollout.engine=hf",
            "reward.workers=1",
        ]
    )
    save_resolved(cfg, root / "run")
    write_checkpoint(root / "run", 5, lambda folder: shutil.copytree(tiny_path, folder / "model"), keep_last=2)
    save_resolved(cfg, root / "damaged")
    write_checkpoint(root / "damaged", 5, lambda folder: shutil.copytree(tiny_path, folder / "model"), keep_last=2)
    weights = root / "damaged" / "checkpoints" / "step_5" / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:5000])
    (root / "norun").mkdir()
    save_resolved(cfg, root / "nockpt")
    return {"root": root, "data": d, "models": m, "rewards": r, "cwd": Path.cwd(), "run": root / "run"}


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    from rlbal.cli import main

    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def on_path(env, monkeypatch):
    monkeypatch.syspath_prepend(str(env["rewards"]))
    return env


@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "train"])
@pytest.mark.parametrize("case,argv,line", TRAIN, ids=[c[0] for c in TRAIN])
def test_train_bad_input_is_one_line(on_path, capsys, case, argv, line, dry_run):
    if case == "wandb-missing" and importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed")
    args = ["train", *shlex.split(argv.format(**on_path)), f"run.output_dir={on_path['root']}/out"]
    code, out, err = _run(args + (["--dry-run"] if dry_run else []), capsys)
    assert (code, err) == (2, f"rlbal: {line.format(**on_path)}\n")
    # stdout: nothing, or (training, past the config) the one start line printed before the checks
    assert out == "" or (not dry_run and out.startswith("[rlbal] run run:") and out.count("\n") == 1), out


@pytest.mark.parametrize("case,argv,line", OTHER + PLOT, ids=[c[0] for c in OTHER + PLOT])
def test_eval_plot_assets_bad_input_is_one_line(on_path, capsys, case, argv, line):
    code, out, err = _run(shlex.split(argv.format(**on_path)), capsys)
    expected = line.format(**on_path)
    assert (code, err) == (2, (expected if expected.startswith("rlbal ") else f"rlbal: {expected}") + "\n")
    assert out == ""


def test_compare_bad_input_is_one_line(on_path, capsys):
    """`rlbal compare` (another module's command) goes through the same handler: one line, non-zero."""
    from rlbal.cli import COMMANDS

    if "compare" not in COMMANDS:
        pytest.skip("no `rlbal compare` command in this tree")
    code, out, err = _run(["compare", str(on_path["root"] / "nope.yaml")], capsys)
    assert (code, out, err) == (2, "", f"rlbal: config error: recipe not found: {on_path['root'] / 'nope.yaml'}\n")
    code, out, err = _run(["compare", "--bogus"], capsys)
    assert (code, out) == (2, "") and err.startswith("rlbal: usage error: ") and err.count("\n") == 1, err


def test_unknown_command_is_one_line(capsys):
    from rlbal.cli import COMMANDS

    code, out, err = _run(["trian"], capsys)
    assert (code, out) == (2, "")
    assert err == f"rlbal: unknown command 'trian'; commands: {', '.join(COMMANDS)} (rlbal --help)\n"


@pytest.mark.parametrize(
    "argv",
    [
        ["--debug", "train", "reward.fn=mathh", "OUT", "--dry-run"],
        ["train", "reward.fn=mathh", "OUT", "--debug", "--dry-run"],
    ],
)
def test_debug_anywhere_lets_the_error_through(argv, tmp_path):
    from rlbal.cli import main
    from rlbal.errors import RewardError

    with pytest.raises(RewardError, match=r"^reward\.fn: unknown reward 'mathh'"):
        main([f"run.output_dir={tmp_path}" if a == "OUT" else a for a in argv])


def test_unusual_settings_warn_in_one_line(tmp_path, capsys, monkeypatch):
    from rlbal import errors

    monkeypatch.setattr(errors, "_warned", set())
    code, out, err = _run(["train", "rollout.n=100000", f"run.output_dir={tmp_path}", "--dry-run"], capsys)
    assert code == 0 and "rollout:" in out
    assert err == (
        "rlbal: warning: rollout.n=100000 x train.prompts_per_step=16 = 1,600,000 completions per step "
        "(generation time and memory grow with it); is that intended?\n"
    )


# ----------------------------------------------------------------------------- real processes


def _proc(cmd: list[str], env_extra: dict[str, str] | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env_extra or {})}
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def test_the_rlbal_script_prints_one_line_and_debug_shows_the_traceback(env):
    plain = _proc([RLBAL, "train", "reward.fn=mathh", "--dry-run"])
    assert plain.returncode == 2 and plain.stdout == ""
    assert plain.stderr.splitlines() == [
        "rlbal: reward error: reward.fn: unknown reward 'mathh': use one of ('math', "
        "'numeric', 'exact', 'gsm8k', 'rgym', 'format') or an import path "
        "'package.module:function'"
    ]
    debug = _proc([RLBAL, "train", "reward.fn=mathh", "--debug", "--dry-run"])
    assert debug.returncode == 1
    assert debug.stderr.startswith("Traceback (most recent call last):")
    assert (
        debug.stderr.strip().splitlines()[-1].startswith("rlbal.errors.RewardError: reward.fn: unknown reward 'mathh'")
    )
    module = _proc([sys.executable, "-m", "rlbal.train", f"model.path={env['models']}/truncated"])
    assert module.returncode == 2 and "Traceback" not in module.stderr
    assert module.stderr.splitlines() == [
        f"rlbal: model error: {env['models']}/truncated/model.safetensors: truncated "
        "(5000 bytes, the header describes 1446456)"
    ]


SMALL = [
    "rollout.engine=hf",
    "model.path=tiny-sft",
    "rollout.max_new_tokens=16",
    "eval.size=1",
    "eval.k=1",
    "reward.workers=1",
    "logging.progress=false",
    "logging.plots=false",
    "logging.tensorboard=false",
]


@pytest.mark.slow
def test_a_reward_failing_on_every_completion_stops_the_run(env, tmp_path):
    proc = _proc(
        [
            sys.executable,
            "-m",
            "rlbal.train",
            *SMALL,
            "train.prompts_per_step=4",
            "rollout.n=2",
            "data.size=8",
            "run.max_steps=5",
            "reward.max_failed_steps=2",
            "reward.fn=my_rewards:always_raises",
            f"run.output_dir={tmp_path}",
            "run.name=r",
        ],
        {"PYTHONPATH": str(env["rewards"])},
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr + proc.stdout
    assert proc.stderr.strip().splitlines()[-1] == (
        "rlbal: reward error: reward.fn='my_rewards:always_raises' failed on every completion for 2 consecutive steps "
        "(step 2: 8 error, 0 timeout of 8; the first reason of each step is in the warnings above); fix the reward, "
        "raise reward.timeout_s, or set reward.max_failed_steps (0 = never stop)"
    )
    steps = [json.loads(line)["step"] for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert max(steps) == 2  # steps 1 and 2 were logged, step 3 never ran


@pytest.mark.slow
def test_dropped_prompts_and_a_dataset_smaller_than_a_batch_warn_once(tmp_path):
    rows = [{"prompt": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(5)]
    rows[2]["prompt"] = "What is " + " + ".join(["1"] * 120) + "?"  # longer than 64 tokens after templating
    data = tmp_path / "five.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    proc = _proc(
        [
            sys.executable,
            "-m",
            "rlbal.train",
            *SMALL,
            "train.prompts_per_step=8",
            "rollout.n=2",
            "data.source=files",
            f"data.paths=[{data}]",
            "data.max_prompt_tokens=64",
            "run.max_steps=1",
            f"run.output_dir={tmp_path}",
            "run.name=r",
        ]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("rlbal: warning:")]
    assert warnings == [
        "rlbal: warning: data: dropped 1 of 5 prompts longer than data.max_prompt_tokens=64 (data.too_long=drop; "
        "metric data/dropped_too_long)",
        "rlbal: warning: data: 4 prompts < train.prompts_per_step=8: every step draws some prompts more than once",
    ]
    row = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()][-1]
    assert row["step"] == 1 and row["data/dropped_too_long"] == 1.0 and row["data/num_prompts"] == 4.0
