"""Assemble a run from its config: checks, run directory, components, resume, checkpoints, final plots.

`run_training(cfg)` is what `rlbal train` and `python -m rlbal.train` call. It works the same in one process,
under `accelerate launch` (every rank runs it; rank 0 writes files) and inside a Ray job. It starts with
`rlbal.preflight.check_run` (reward, model, data and the checkpoint to resume from, checked before anything
heavy loads); a damaged newest checkpoint is skipped with one warning line (rlbal.learner.checkpoint).
"""
from __future__ import annotations

import random
import time
from pathlib import Path

import numpy as np
import torch

from rlbal.config import Config, save_resolved
from rlbal.console import end_summary, is_launcher_main, ready_line, say, start_line
from rlbal.driver import LoopState, train_loop
from rlbal.driver_parts import Parts, build_parts
from rlbal.errors import CheckpointError
from rlbal.learner.checkpoint import read_json, write_checkpoint, write_json
from rlbal.learner.state_io import load_tree, save_tree
from rlbal.logging import truncate_metrics
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
        state = loop(cfg, parts, state, save=lambda s: save_checkpoint(run_dir, s, parts, cfg),
                           evaluate=lambda step: parts.evaluator(step) if parts.evaluator else {})
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


# ----------------------------------------------------------------------------- checkpoints


def save_checkpoint(run_dir: Path, state: LoopState, parts: Parts, cfg: Config) -> Path:
    def write(folder: Path) -> None:
        parts.learner.save_model(folder / "model", is_main=parts.is_main)
        parts.learner.save_state(folder, is_main=parts.is_main)
        if parts.is_main:
            parts.tokenizer.save_pretrained(folder / "model")
            save_tree({"torch": torch.get_rng_state(), "numpy": _np_rng_state(),
                       "python": _py_rng_state()}, folder, "rng")
            write_json(folder / "trainer_state.json", {
                "step": state.step, "samples_seen": state.samples_seen,
                "controllers": parts.controllers.state_dict(), "filter": parts.filter.state_dict(),
                "source": parts.source.state_dict(), "data_fingerprint": parts.source.dataset.fingerprint,
                "engine_seed_step": state.step, "rewards": parts.rewards.state_dict(),
            })

    return write_checkpoint(run_dir, state.step, write, keep_last=cfg.checkpoint.keep_last,
                            is_main=parts.is_main, barrier=parts.barrier)


def load_checkpoint(ckpt: Path, parts: Parts) -> LoopState:
    meta = read_json(ckpt / "trainer_state.json")
    if meta["data_fingerprint"] != parts.source.dataset.fingerprint:
        raise CheckpointError(f"{ckpt}: the prompt data changed since this checkpoint (fingerprint mismatch); "
                              "resume with the same data or start a new run (run.resume=never)")
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
