"""Whole runs with `run.orchestrator=ray`: the same numbers as a local run, a learner crash, resume, async.

`run_training` is the unchanged local entry point; `ray_mode` makes it pick the Ray parts and loop the way
rlbal.run dispatches on `run.orchestrator` and `ray.async_steps`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
GDRO = ROOT / "recipes" / "gdro.yaml"

pytestmark = pytest.mark.ray


@pytest.fixture
def ray_mode():
    """rlbal.run.run_training: it dispatches on run.orchestrator (Ray parts, and the async loop when asked)."""
    import rlbal.run

    return rlbal.run.run_training


def checkpoint_of(run_dir: Path, step: int) -> tuple[dict, dict[str, torch.Tensor]]:
    from safetensors.torch import load_file

    folder = run_dir / "checkpoints" / f"step_{step}"
    state = json.loads((folder / "trainer_state.json").read_text())
    return state, load_file(str(folder / "model" / "model.safetensors"))


@pytest.fixture(scope="module")
def local_run(ray_session, tmp_path_factory, overrides):
    """The local (single-process, in-process vLLM) run that the Ray runs must reproduce."""
    from rlbal.config import load_config
    from rlbal.run import run_training

    return run_training(load_config(GDRO, overrides(tmp_path_factory.mktemp("local"), "local", "rollout.engine=vllm")))


@pytest.fixture(scope="module")
def local_run_rows(ray_session, tmp_path_factory, overrides):
    """The local run with one forward per row: DeepSpeed wraps the model, so its ranks do not share prompt
    forwards (rlbal.learner.shared_prompt.supported); the same float summation as theirs for the weights check."""
    from rlbal.config import load_config
    from rlbal.run import run_training

    args = overrides(tmp_path_factory.mktemp("local_rows"), "local", "rollout.engine=vllm")
    return run_training(load_config(GDRO, [*args, "learner.share_prompt_forward=false"]))


@pytest.mark.vllm
@pytest.mark.parametrize(
    "backend", ["torch", pytest.param("accelerate", marks=[pytest.mark.deepspeed, pytest.mark.slow])]
)
def test_ray_run_matches_the_local_run(
    ray_session, ray_mode, local_run, backend, tmp_path, overrides, metrics_of, sft_path, request
):
    """2 vLLM rollout actors + a learner group of 2 ranks (plain collective DDP, or DeepSpeed ZeRO-2 through
    accelerate inside the actors) against the local run: same samples, decisions, losses and weights."""
    from rlbal.config import load_config

    local = local_run if backend == "torch" else request.getfixturevalue("local_run_rows")
    remote = ray_mode(
        load_config(
            GDRO,
            overrides(
                tmp_path,
                "ray",
                "rollout.engine=vllm",
                "run.orchestrator=ray",
                "ray.rollout_actors=2",
                "ray.learner_ranks=2",
                f"learner.backend={backend}",
                "ray.placement=colocated",
                "ray.cpus_per_actor=0.5",
            ),
        )
    )
    want, got = metrics_of(local), metrics_of(remote)
    assert sorted(got) == sorted(want) == [0, 1, 2, 3]
    assert sum(want[s]["reward/mean"] for s in (1, 2, 3)) > 0  # some signal: the updates are not all zero
    for step in (1, 2, 3):
        for key, value in want[step].items():
            if "timing" in key or "seconds" in key:
                continue
            if key.startswith(("reward/", "rollout/", "controller/", "eval/", "filter/")):
                assert got[step][key] == pytest.approx(value, abs=1e-9), (step, key)  # same samples, same decisions
            elif key.startswith(("loss/", "learner/", "is/")):  # extrema too: min/max-reduced over ranks
                assert got[step][key] == pytest.approx(value, rel=1e-3, abs=1e-6), (step, key)
        assert got[step]["ray/actor_restarts"] == 0.0 and got[step]["rollout/staleness"] == 0.0
        assert got[step]["timing/weight_sync"] > 0
    state_l, weights_l = checkpoint_of(local, 3)
    state_r, weights_r = checkpoint_of(remote, 3)
    assert state_r["controllers"] == state_l["controllers"] and state_r["source"] == state_l["source"]
    assert weights_r.keys() == weights_l.keys()
    for name, t in weights_l.items():  # AdamW noise from summation order only (see test_learner_group)
        assert float((weights_r[name] - t).abs().max()) < 1e-4, name
    assert any(float((t - w0).abs().max()) > 1e-3 for t, w0 in zip(weights_l.values(), initial(sft_path).values()))


def released(ray, timeout_s: float = 30.0) -> bool:
    """Whether all of the session cluster's CPUs are free again (kills and bundle removal are asynchronous)."""
    deadline = time.monotonic() + timeout_s
    while ray.available_resources().get("CPU", 0.0) < 4.0:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def initial(model_path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(model_path / "model.safetensors"))


def test_learner_crash_stops_cleanly_then_resume_continues_async(
    ray_session, ray_mode, tmp_path, overrides, metrics_of, monkeypatch, capsys
):
    from rlbal.config import load_config
    from rlbal.ray.learner_group import LearnerGroup, LearnerGroupError

    args = overrides(
        tmp_path,
        "crash",
        "rollout.engine=hf",
        "run.orchestrator=ray",
        "ray.rollout_actors=1",
        "ray.learner_ranks=1",
        "ray.placement=disaggregated",
        "checkpoint.every=1",
        "run.resume=auto",
    )
    update = LearnerGroup.update

    def crash_on_second_update(self, batch):
        if self.steps == 1:
            ray_session.kill(self.actors[0], no_restart=True)  # the learner dies as step 2 updates
        return update(self, batch)

    monkeypatch.setattr(LearnerGroup, "update", crash_on_second_update)
    with pytest.raises(LearnerGroupError, match="learner rank 0 died during update"):
        ray_mode(load_config(GDRO, args))
    run_dir = tmp_path / "crash"
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step_1"]
    assert sorted(metrics_of(run_dir)) == [0, 1]
    assert released(ray_session)  # every actor and bundle of the failed run let go

    monkeypatch.setattr(LearnerGroup, "update", update)
    # resume, with one-step-off generation (checkpoint only at the end: checkpoint steps are not pipelined)
    ray_mode(load_config(GDRO, [*args, "ray.async_steps=1", "checkpoint.every=0"]))
    assert f"resumed from {run_dir / 'checkpoints' / 'step_1'} at step 1" in capsys.readouterr().out
    metrics = metrics_of(run_dir)
    assert sorted(metrics) == [0, 1, 2, 3]
    assert [metrics[s]["train/samples_seen"] for s in (1, 2, 3)] == [32.0, 64.0, 96.0]  # 8 prompts x 4 each
    # step 2 is the resumed loop's first (generated with the weights it updates); step 3 was generated while
    # update 2 ran, with the weights from before it
    assert [metrics[s]["rollout/staleness"] for s in (2, 3)] == [0.0, 1.0]
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step_1", "step_3"]
    assert released(ray_session)
