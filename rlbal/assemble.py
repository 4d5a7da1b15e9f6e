"""Assemble a run's components from its config: the `Parts` the loop touches, the engine's options, the reward
specs, the held-out prompts.

`build_parts(cfg, run_dir)` picks every component from the recipe (the registries live with each part:
engines in rlbal.rollout, losses in rlbal.algo, rewards in reward, controllers in rlbal.controllers), so the
driver loop (`rlbal.driver`) has no variant branches. `assemble_parts` builds the driver-side components
around a given engine and learner: local runs and Ray runs (`rlbal.ray`) differ only in those two.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from rlbal.controllers import Controllers, FilterConfig, GroupFilter
from rlbal.data import PromptBatch, PromptSource, SampledSource, format_from_config, load_prompts, spec_from_config
from rlbal.parts import Parts

# Without a configured filter every group is kept in one round: the closed band [0, 1] drops nothing, and a
# prompt drawn twice (a batch that straddles an epoch boundary) trains as two groups.
KEEP_ALL = FilterConfig(
    rule="band",
    low=0.0,
    high=1.0,
    low_closed=True,
    high_closed=True,
    min_group_size=1,
    max_rounds=1,
    drop_duplicates=False,
)

# Procedural eval prompts come from generator seed run.seed + this: a stream independent of training's.
EVAL_SEED_OFFSET = 1_000_003


def build_parts(cfg, run_dir: Path) -> Parts:
    """Every component of a local (single-process or accelerate) run."""
    from rlbal.learner import make_learner
    from rlbal.rollout import make_engine

    learner = make_learner(cfg)
    engine = make_engine(cfg.rollout.engine, model_folder(cfg), **engine_options(cfg))
    world = learner.backend.world
    return assemble_parts(cfg, run_dir, engine, learner, is_main=world.is_main, barrier=world.barrier)


def assemble_parts(
    cfg, run_dir: Path, engine: Any, learner: Any, *, is_main: bool = True, barrier: Callable[[], None] = lambda: None
) -> Parts:
    """The driver-side components (data, controllers, rewards, filter, eval) around a given engine and learner:
    local runs and the Ray orchestrator (rlbal.ray) differ only in those two."""
    from reward.executor import RewardExecutor
    from rlbal.evaluate import evaluate
    from rlbal.learner.model import load_tokenizer

    tokenizer = load_tokenizer(cfg.model.path)
    dataset = load_prompts(spec_from_config(cfg.data, cfg.run.seed), tokenizer, format_from_config(cfg.data))
    c = cfg.controllers
    controllers = Controllers.from_configs(
        c.classifier, c.prompt_gdro, c.rollout, n_rollouts=cfg.rollout.n, num_prompts=len(dataset)
    )
    sampling = controllers.sampler is not None  # Prompt-GDRO realise='sampling': prompts are drawn by class
    source = SampledSource(dataset, controllers.sample) if sampling else PromptSource(dataset, seed=cfg.run.seed)
    rewards = RewardExecutor(
        train_reward_specs(cfg),
        num_workers=cfg.reward.workers,
        timeout_s=cfg.reward.timeout_s,
        threshold=cfg.reward.correct_threshold,
    )
    parts = Parts(
        cfg=cfg,
        source=source,
        controllers=controllers,
        engine=engine,
        rewards=rewards,
        filter=GroupFilter(c.filter or KEEP_ALL),
        learner=learner,
        tokenizer=tokenizer,
        run_dir=run_dir,
        is_main=is_main,
        barrier=barrier,
    )
    if cfg.eval.every or cfg.eval.size:
        held_out = eval_prompts(cfg, tokenizer)
        ev = cfg.eval

        def evaluator(step: int) -> dict[str, float]:
            out = evaluate(
                engine,
                held_out,
                rewards,
                k=ev.k,
                temperature=ev.temperature,
                top_p=ev.top_p,
                max_new_tokens=cfg.rollout.max_new_tokens,
                seed=cfg.run.seed + step,
                stop=tuple(cfg.rollout.stop),
            )
            rewards.metrics()  # eval has its own eval/outcome/* keys: keep its scores out of the next step's reward/*
            return out

        parts.evaluator = evaluator
    return parts


def model_folder(cfg) -> Path:
    """The policy's HF folder (a built-in asset is built here once, cached)."""
    from rlbal.assets import resolve_model

    return resolve_model(cfg.model.path)


def engine_options(cfg) -> dict[str, Any]:
    """Keyword arguments of `make_engine` from the recipe: what every engine takes, and those recipe options the
    recipe's engine declares (`rlbal.rollout.factory.RECIPE_OPTIONS`)."""
    from rlbal.rollout.factory import engine_kwargs

    r = cfg.rollout
    max_model_len = cfg.data.max_prompt_tokens + r.max_new_tokens
    return engine_kwargs(
        r.engine,
        dict(
            dtype=cfg.model.dtype,
            seed=cfg.run.seed,
            max_model_len=max_model_len,
            gpu_memory_utilization=r.gpu_memory_utilization,
            enforce_eager=r.enforce_eager,
            use_tqdm_on_load=cfg.logging.verbose,  # vLLM's weight-loading bar: only when verbose
            kv_cache_gib=r.kv_cache_gib,  # KV cache sized from the batch (rlbal.rollout.memory)
            kv_tokens=cfg.train.prompts_per_step * r.n * max_model_len,
        ),
    )


def correctness_spec(cfg):
    """The run's correctness reward, with the recipe's extraction mode when the reward takes one (eval uses it
    alone)."""
    import inspect

    from reward.registry import REWARDS, RewardSpec

    fn = cfg.reward.fn
    takes = fn in REWARDS and "extraction" in inspect.signature(REWARDS.get(fn)).parameters
    return RewardSpec(fn, {"extraction": cfg.reward.extraction} if takes else {})


def train_reward_specs(cfg) -> tuple:
    """The training reward: correctness + the optional format bonus (DAPO length shaping is added per batch)."""
    from reward.registry import RewardSpec

    specs = [correctness_spec(cfg)]
    if cfg.reward.format_weight > 0:
        specs.append(RewardSpec("format", weight=cfg.reward.format_weight))
    return tuple(specs)


def eval_prompts(cfg: Any, tokenizer: Any) -> PromptBatch:
    """The held-out prompts of a run's `eval` section as a `PromptBatch`, templated like the training data.

    procedural: the training tasks and levels, `eval.size` per (task, level), from the seed run.seed +
    EVAL_SEED_OFFSET (an independent generator stream; small tasks can still repeat a training question).
    files / gsm8k: the first `eval.size` rows of `eval.paths` (with the data section's field mapping) or
    of the GSM8K test split.
    """
    dataset = load_prompts(eval_spec(cfg), tokenizer, format_from_config(cfg.data))
    n = len(dataset) if cfg.eval.source == "procedural" else min(cfg.eval.size, len(dataset))
    return dataset.batch(np.arange(n, dtype=np.int64))


def eval_spec(cfg: Any) -> Any:
    """The prompt source spec of a run's `eval` section (see `eval_prompts`)."""
    from rlbal.data.dataset import FilesSpec, GSM8KSpec, ProceduralSpec, field_map_from_config

    ev, data = cfg.eval, cfg.data
    if ev.source == "procedural":
        return ProceduralSpec(
            tasks=tuple(data.tasks), levels=tuple(data.levels), size=ev.size, seed=cfg.run.seed + EVAL_SEED_OFFSET
        )
    if ev.source == "gsm8k":
        return GSM8KSpec(split="test")
    return FilesSpec(paths=tuple(ev.paths), fields=field_map_from_config(data))
