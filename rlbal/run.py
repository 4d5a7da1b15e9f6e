"""Run training from a config: checks, run directory, components, resume, checkpoints, final plots, end summary.

`run_training(cfg)` is what `rlbal train` and `python -m rlbal.train` call. It works the same in one process,
under `accelerate launch` (every rank runs it; rank 0 writes files) and inside a Ray job. It starts with
`rlbal.preflight.check_run` (reward, model, data and the checkpoint to resume from, checked before anything
heavy loads); a damaged newest checkpoint is skipped with one warning line (rlbal.learner.checkpoint).
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlbal.assemble import build_parts
from rlbal.config import Config, save_resolved
from rlbal.console import PREFIX, duration, is_launcher_main, ready_line, say, start_line
from rlbal.driver import LoopState, train_loop
from rlbal.errors import CheckpointError
from rlbal.evaluate import eval_curve
from rlbal.learner.checkpoint import complete_checkpoints, read_json, write_checkpoint, write_json
from rlbal.learner.state_io import load_tree, save_tree
from rlbal.logging import read_metrics, truncate_metrics
from rlbal.parts import Parts
from rlbal.preflight import check_run, warn_about_data
from rlbal.runtime_env import configure_threads


def run_dir_of(cfg: Config) -> Path:
    return Path(cfg.run.output_dir) / cfg.run.name


def run_training(cfg: Config, recipe: str | None = None) -> Path:
    """Train; `recipe` (the YAML path, if any) only shapes the next commands the end summary suggests."""
    t0 = time.perf_counter()
    run_dir = run_dir_of(cfg)
    if is_launcher_main():
        say(start_line(cfg, run_dir))
    ckpt = check_run(cfg)  # builds a missing asset here, in every process, before any process group exists
    configure_threads(cfg)  # environment and torch threads of this process (rlbal.runtime_env), logged once
    _seed_everything(cfg.run.seed)
    if cfg.run.orchestrator == "ray":  # same loop and components; engine and learner become Ray actor groups
        from rlbal.ray import build_ray_parts as build_parts_for
        from rlbal.ray import loop_for

        loop = loop_for(cfg)
    else:
        build_parts_for, loop = build_parts, train_loop
    parts = build_parts_for(cfg, run_dir)
    warn_about_data(cfg, parts.source.dataset)
    if parts.is_main:
        save_resolved(cfg, run_dir)
        say(ready_line(cfg, parts, time.perf_counter() - t0))
    state = LoopState()
    if ckpt is not None:
        state = load_checkpoint(ckpt, parts)
        if parts.is_main:
            truncate_metrics(run_dir, state.step)
        print(f"[rlbal] resumed from {ckpt} at step {state.step}", flush=True)
    parts.open_logger(start_step=state.step)
    try:
        if state.step == 0 and parts.evaluator is not None:
            parts.logger.log(0, parts.evaluator(0))
        state = loop(
            cfg,
            parts,
            state,
            save=lambda s: save_checkpoint(run_dir, s, parts, cfg),
            evaluate=lambda step: parts.evaluator(step) if parts.evaluator else {},
        )
        if cfg.checkpoint.every == 0 or state.step % cfg.checkpoint.every:
            save_checkpoint(run_dir, state, parts, cfg)
    finally:
        parts.close()
    plots: list[Path] = []
    if parts.is_main and cfg.logging.plots:
        from rlbal.plot import plot_run

        plots = plot_run([run_dir], run_dir / "plots")
    if parts.is_main:
        print(end_summary(cfg, run_dir, wall_s=time.perf_counter() - t0, plots=plots, recipe=recipe), flush=True)
    return run_dir


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def end_summary(cfg: Any, run_dir: Path, *, wall_s: float, plots: list[Path], recipe: str | None) -> str:
    """The lines printed when a run ends: time, train reward, held-out curve, where everything is, what next."""
    rows = read_metrics(run_dir)
    train = [r for r in rows if "reward/mean" in r]
    steps = train[-1]["step"] if train else 0
    sec = [r["timing/step"] for r in train if "timing/step" in r]
    lines = [
        f"{PREFIX} done: {steps} steps in {duration(wall_s)}"
        + (f" ({sorted(sec)[len(sec) // 2]:.2f} s/step median)" if sec else "")
    ]
    if len(train) == 1:
        lines.append(f"  train reward      {train[0]['reward/mean']:.3f}")
    elif train:
        w = min(10, len(train) // 2)  # mean of the first and of the last w steps
        first, last = (sum(r["reward/mean"] for r in part) / w for part in (train[:w], train[-w:]))
        start, end = (
            ("the first {w} steps", "the last {w}")
            if w > 1
            else (f"step {train[0]['step']}", f"step {train[-1]['step']}")
        )
        lines.append(f"  train reward      {first:.3f} ({start.format(w=w)}) -> {last:.3f} ({end.format(w=w)})")
    evals = [r for r in rows if f"eval/mean@{cfg.eval.k}" in r]
    if evals:
        n = evals[-1].get("eval/n_prompts")
        size = f"{n:.0f} prompts x {cfg.eval.k} samples, " if n else ""
        lines.append(f"  held-out mean@{cfg.eval.k} ({size}T={cfg.eval.temperature}):")
        lines += ["    " + line for line in eval_curve(run_dir / "metrics.jsonl", cfg.eval.k).splitlines()]
    ckpts = complete_checkpoints(run_dir)
    if ckpts:
        lines.append(f"  checkpoints       {ckpts[-1][1].parent}/ ({', '.join(p.name for _, p in ckpts)})")
    logs = [name for name in ("metrics.jsonl", "completions.jsonl", "config.yaml") if (run_dir / name).exists()]
    lines.append(f"  logs              {run_dir}/ ({', '.join(logs)})")
    if plots:
        summary = next((p for p in plots if p.name == "summary.png"), plots[0])
        lines.append(f"  plots             {summary}" + (f" (+ {len(plots) - 1} more)" if len(plots) > 1 else ""))
    if (run_dir / "tb").is_dir():
        lines.append(f"  tensorboard       tensorboard --logdir {run_dir / 'tb'}")
    lines.append(
        f"  next              rlbal eval {run_dir} --k {2 * cfg.eval.k}   "
        f"# pass@1..{2 * cfg.eval.k} of the newest checkpoint"
    )
    lines.append(f"                    rlbal plot {run_dir} runs/OTHER   # overlay another run")
    lines.append(
        f"                    rlbal compare {recipe or 'RECIPE.yaml'} --methods grpo,gdro --seeds 1,2,3"
        "   # GDRO vs GRPO over seeds, with intervals"
    )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- checkpoints


def save_checkpoint(run_dir: Path, state: LoopState, parts: Parts, cfg: Config) -> Path:
    def write(folder: Path) -> None:
        parts.learner.save_model(folder / "model", is_main=parts.is_main)
        parts.learner.save_state(folder, is_main=parts.is_main)
        if parts.is_main:
            parts.tokenizer.save_pretrained(folder / "model")
            save_tree(
                {"torch": torch.get_rng_state(), "numpy": _np_rng_state(), "python": _py_rng_state()}, folder, "rng"
            )
            write_json(
                folder / "trainer_state.json",
                {
                    "step": state.step,
                    "samples_seen": state.samples_seen,
                    "controllers": parts.controllers.state_dict(),
                    "filter": parts.filter.state_dict(),
                    "source": parts.source.state_dict(),
                    "data_fingerprint": parts.source.dataset.fingerprint,
                    "engine_seed_step": state.step,
                    "rewards": parts.rewards.state_dict(),
                },
            )

    return write_checkpoint(
        run_dir, state.step, write, keep_last=cfg.checkpoint.keep_last, is_main=parts.is_main, barrier=parts.barrier
    )


def load_checkpoint(ckpt: Path, parts: Parts) -> LoopState:
    meta = read_json(ckpt / "trainer_state.json")
    if meta["data_fingerprint"] != parts.source.dataset.fingerprint:
        raise CheckpointError(
            f"{ckpt}: the prompt data changed since this checkpoint (fingerprint mismatch); "
            "resume with the same data or start a new run (run.resume=never)"
        )
    from safetensors.torch import load_file

    weights = {}
    for f in sorted((ckpt / "model").glob("*.safetensors")):
        weights.update(load_file(str(f)))
    parts.learner.load_weights(weights)
    parts.learner.load_state(ckpt)
    parts.controllers.load_state_dict(meta["controllers"])
    parts.filter.load_state_dict(meta["filter"])
    parts.source.load_state_dict(meta["source"])
    parts.rewards.load_state_dict(meta.get("rewards", {}))  # reward/total/* counters (absent before they were saved)
    rng = load_tree(ckpt, "rng")
    torch.set_rng_state(rng["torch"])
    keys, pos, has_gauss, cached = rng["numpy"]
    np.random.set_state(("MT19937", np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    random.setstate((rng["python"][0], tuple(rng["python"][1]), rng["python"][2]))
    parts.engine.update_weights(parts.learner.export_weights())
    return LoopState(step=int(meta["step"]), samples_seen=int(meta["samples_seen"]))


def _np_rng_state():
    _, keys, pos, has_gauss, cached = np.random.get_state()
    return [keys.astype(np.int64).tolist(), int(pos), int(has_gauss), float(cached)]


def _py_rng_state():
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]
