"""Checks of everything a run reads, before anything heavy loads: `run_training` starts with them and
`rlbal train --dry-run` runs them too (without building assets).

    ckpt = check_run(cfg)          # the verified checkpoint to resume from, or None

In order: the reward function resolves and can be called as fn(completion, answer, **kwargs); optional
packages the config asks for are installed; the model is a built-in asset (built here, in every process
before any process group exists, see rlbal.assets) or a local folder whose config, weights and tokenizer
look whole; the training and eval prompts read and validate (every row of local files, procedural task
names and levels); the checkpoint to resume from verifies against its manifest. Each failure raises a
`rlbal.errors.UserError` naming the culprit; input that is accepted but probably not meant gets one warning
line (`rlbal.errors.warn`). The tables read here are handed to the dataset build (`rlbal.data.dataset`),
so local files are read once.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from rlbal.errors import RewardError, SetupError, warn

# A step above this many completions is almost certainly a typo (generation time and memory grow with it).
MAX_COMPLETIONS_PER_STEP = 65_536


def check_run(cfg: Any, *, build_assets: bool = True) -> Path | None:
    """All checks of a training run; returns the checkpoint `run.resume` selects (verified) or None."""
    from rlbal.learner.checkpoint import resolve_resume

    check_reward(cfg)
    check_packages(cfg)
    check_model(cfg.model.path, build=build_assets)
    check_data(cfg)
    warn_unusual(cfg)
    run_dir = Path(cfg.run.output_dir) / cfg.run.name
    return resolve_resume(run_dir, cfg.run.resume)


def check_reward(cfg: Any, specs: tuple | None = None) -> None:
    """Resolve and bind every reward of the run in this process (user modules are imported here)."""
    from reward.registry import RewardSpecError, bind_reward
    from rlbal.assemble import train_reward_specs

    for spec in specs if specs is not None else train_reward_specs(cfg):
        try:
            bind_reward(spec)
        except RewardSpecError as err:
            raise RewardError(f"reward.fn: {err}") from None


def check_packages(cfg: Any) -> None:
    """Optional packages the config turns on."""
    if cfg.logging.wandb != "off" and importlib.util.find_spec("wandb") is None:
        raise SetupError(
            f"logging.wandb={cfg.logging.wandb} needs the `wandb` package (pip install wandb); or set logging.wandb=off"
        )


def check_model(path: str, *, build: bool) -> None:
    """A built-in asset name (built now when `build`) or a local HF folder that looks whole."""
    from rlbal.assets import is_builtin, local_model_folder, resolve_model

    if not is_builtin(path):
        local_model_folder(path)
    elif build:
        resolve_model(path)


def check_data(cfg: Any) -> None:
    """Training and eval prompts: local files read and validated row by row, procedural tasks and levels."""
    from rlbal.assemble import eval_spec
    from rlbal.data.dataset import spec_from_config
    from rlbal.data.procedural import check_tasks

    data = cfg.data
    if data.source == "procedural" or cfg.eval.source == "procedural":
        check_tasks(data.tasks, data.levels)
    if data.source == "files":
        check_files(spec_from_config(data, cfg.run.seed))
    if cfg.eval.source == "files":
        check_files(eval_spec(cfg))


def check_eval(cfg: Any) -> None:
    """What `rlbal eval` reads besides the model: its correctness reward and the held-out prompts."""
    from rlbal.assemble import correctness_spec, eval_spec
    from rlbal.data.procedural import check_tasks

    check_reward(cfg, (correctness_spec(cfg),))
    if cfg.eval.source == "procedural":
        check_tasks(cfg.data.tasks, cfg.data.levels)
    elif cfg.eval.source == "files":
        check_files(eval_spec(cfg))


def check_files(spec: Any) -> None:
    """Read and validate every row of a files spec (kept for the dataset build: read once); no rows and
    repeated ids are errors here already."""
    from rlbal.data.dataset import check_unique_keys, load_table, remember_table
    from rlbal.data.records import DataError

    table = load_table(spec)
    if len(table) == 0:
        raise DataError(f"{table.source}: empty dataset (no rows)")
    check_unique_keys(table)
    remember_table(spec, table)


def warn_unusual(cfg: Any) -> None:
    """One warning line for settings that are valid but probably not meant."""
    per_step = cfg.train.prompts_per_step * cfg.rollout.n
    if per_step > MAX_COMPLETIONS_PER_STEP:
        warn(
            f"rollout.n={cfg.rollout.n} x train.prompts_per_step={cfg.train.prompts_per_step} = {per_step:,} "
            f"completions per step (generation time and memory grow with it); is that intended?"
        )


def warn_about_data(cfg: Any, dataset: Any) -> None:
    """After tokenisation: prompts dropped as too long, and a dataset smaller than one step's batch."""
    if dataset.n_dropped:
        warn(
            f"data: dropped {dataset.n_dropped} of {dataset.n_dropped + len(dataset)} prompts longer than "
            f"data.max_prompt_tokens={cfg.data.max_prompt_tokens} (data.too_long=drop; metric data/dropped_too_long)"
        )
    if len(dataset) < cfg.train.prompts_per_step:
        warn(
            f"data: {len(dataset)} prompts < train.prompts_per_step={cfg.train.prompts_per_step}: every step "
            "draws some prompts more than once"
        )
