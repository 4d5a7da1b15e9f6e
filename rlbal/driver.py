"""The training loop, read like the paper's algorithm. Every stage is a registered component chosen by the
recipe (`rlbal.run.build_parts`), so variants (controllers on/off, filtering, losses, local or Ray) never add
a branch here; each stage is timed as `timing/<stage>`.

    for each step:
        fill the batch:                       (one round, or several when online filtering drops groups)
            pick prompts                      source.next
            classify -> weights -> counts     controllers.decide   (bins from history up to the last step)
            generate counts[i] per prompt     engine.generate
            score                             rewards.score
            keep informative groups           fill.add
        advantages x Prompt-GDRO weights      build_batch
        policy update                         learner.update       (epochs x mini-batches x micro-batches)
        controllers observe                   controllers.observe  (pass rates, loss signal)
        sync weights to the engine            engine.update_weights
        log, checkpoint, evaluate
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from rlbal.driver_parts import Parts, Round, build_batch, prompt_results, rollout_metrics
from rlbal.rollout.engine import SamplingSpec


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


def sampling_for(cfg, step: int, round_: int) -> SamplingSpec:
    """Per-step seeds make generation reproducible on resume (same weights + same seed = same samples)."""
    r = cfg.rollout
    return SamplingSpec(max_new_tokens=r.max_new_tokens, temperature=r.temperature, top_p=r.top_p, top_k=r.top_k,
                        stop=tuple(r.stop), seed=(cfg.run.seed * 1_000_003 + step * 1_009 + round_) % (2**31))


def train_loop(cfg, parts: Parts, state: LoopState, save: Callable[[LoopState], None],
               evaluate: Callable[[int], dict[str, float]]) -> LoopState:
    """Run steps state.step+1 .. cfg.run.max_steps. `save(state)` writes a checkpoint, `evaluate(step)` returns eval metrics."""
    while state.step < cfg.run.max_steps:
        step = state.step + 1
        timer = StageTimer()
        t_step = time.perf_counter()
        rounds: list[Round] = []
        fill = parts.filter.start(cfg.train.prompts_per_step)
        while not fill.done:
            with timer("data"):
                prompts = parts.source.next(fill.request_size())
            with timer("decide"):
                alloc = parts.controllers.decide(prompts.indices)
            with timer("generate"):
                gen = parts.engine.generate(prompts.prompt_token_ids, alloc.counts.tolist(),
                                            sampling_for(cfg, step, len(rounds)))
            with timer("score"):
                round_ = Round(prompts, alloc, gen, score(parts, prompts, gen))
            kept = fill.add(prompts.indices, *round_.group_scores(parts.filter.cfg.rule))
            rounds.append(round_.select(kept))
        with timer("advantages"):
            batch, correct_B = build_batch(cfg, rounds, parts.pad_id)
        with timer("update"):
            update = parts.learner.update(batch)
        with timer("observe"):
            parts.controllers.observe(prompt_results(batch, correct_B, update.signal_B, cfg.algo.loss_signal))
        with timer("weight_sync"):
            parts.engine.update_weights(parts.learner.export_weights())
        state.step = step
        state.samples_seen += batch.num_seqs
        metrics = {**rollout_metrics(batch, rounds, correct_B), **update.metrics}
        log_eval_checkpoint(parts, state, metrics, timer, t_step, save, evaluate, rounds)
    return state


def score(parts: Parts, prompts, gen) -> list:
    """Rewards of a round's completions, each against its own prompt's answer and metadata."""
    return parts.rewards.score([c.text for c in gen.completions],
                               [prompts.answers[c.prompt_index] for c in gen.completions],
                               [prompts.metas[c.prompt_index] for c in gen.completions])


def log_eval_checkpoint(parts: Parts, state: LoopState, metrics: dict[str, float], timer: StageTimer, t_step: float,
                        save: Callable[[LoopState], Any], evaluate: Callable[[int], dict[str, float]],
                        rounds: Sequence[Round] = ()) -> None:
    """The end of a step (shared by the synchronous and the one-step-off loop): every component's metrics,
    eval and checkpoint when due, stage timings, one log row, the step's prompts and sampled completions."""
    step = state.step
    metrics.update({**parts.controllers.metrics(), **parts.filter.metrics(), **parts.rewards.metrics(),
                    **parts.source.metrics()})
    sync = getattr(parts.engine, "last_sync", None)  # local engines: bytes, buckets, MB/s of the last weight sync
    if sync is not None:
        metrics.update({k: v for k, v in sync.metrics().items() if not k.startswith("timing/")})
    if parts.should_eval(step):
        with timer("eval"):
            metrics.update(evaluate(step))
    if parts.should_checkpoint(step):
        with timer("checkpoint"):
            path = save(state)
        if path is not None:
            parts.logger.console.after_step(f"checkpoint step {step} written to {path}")
    metrics.update(timer.metrics())
    metrics["timing/step"] = time.perf_counter() - t_step
    metrics["train/samples_seen"] = float(state.samples_seen)
    if rounds:
        parts.logger.log_completions(step, rounds)
    parts.logger.log(step, metrics)
    parts.check_rewards(step, metrics)

