"""One-step-off training (`ray.async_steps: 1`): step t+1's generation runs while step t's update does.

The synchronous loop (`rlbal.driver.train_loop`) is unchanged; this is its pipelined twin for Ray runs,
built from the same stage functions. Per step t:

    collect the generation submitted during step t-1     (generated with weights after update t-2)
    score, filter (refill rounds are generated now, with the current weights)
    build the batch, submit update t to the learner ranks            -- does not wait
    pick + decide + submit generation t+1                            -- overlaps update t
    wait for update t, controllers observe t
    queue the new weights behind generation t+1 on every actor       -- does not wait

So a batch is at most one update old (`rollout/staleness` = learner updates between the weights that
generated it and the weights it updates, sequence-weighted; 1 when pipelined). The loss already uses the
engine's logprobs as the behaviour policy (ratio pi_theta / pi_engine, truncated IS correction), which is
what makes the stale batch's update correct. Controllers decide step t+1 before observing step t (their
bins lag by one step). No generation is in flight when a checkpoint is written: on checkpoint steps the
next step is not prefetched, so a resumed run continues exactly like an uninterrupted one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from rlbal.driver import LoopState, StageTimer, check_sync, log_eval_checkpoint
from rlbal.learner.contracts import PipelinedLearner
from rlbal.parts import Parts
from rlbal.rollout.engine import PipelinedEngine
from rlbal.step import Round, StepRounds, build_batch, prompt_results, rollout_metrics, sampling_for, score


@dataclass
class Ahead:
    """A generation round already submitted: its prompts, the controllers' decision, the pending call."""

    prompts: Any  # PromptBatch
    alloc: Any  # Allocation
    pending: Any  # rlbal.ray.rollout_group.PendingGeneration
    version: int  # weights version that generates it


def submit_round(cfg: Any, parts: Parts, step: int, round_: int, want: int, timer: StageTimer) -> Ahead:
    """Pick `want` prompts, decide weights and counts, send the generation (returns before it finishes)."""
    with timer("data"):
        prompts = parts.source.next(want)
    with timer("decide"):
        alloc = parts.controllers.decide(prompts.indices)
    pending = parts.engine.submit_generate(
        prompts.prompt_token_ids, alloc.counts.tolist(), sampling_for(cfg, step, round_)
    )
    return Ahead(prompts, alloc, pending, parts.engine.version)


def fill_batch(
    cfg: Any, parts: Parts, step: int, ahead: Ahead | None, timer: StageTimer
) -> tuple[StepRounds, np.ndarray]:
    """Rounds of step `step` (the first one maybe submitted earlier) and (rounds, 2) [version, kept sequences]."""
    rounds = StepRounds()
    versions = []
    fill = parts.filter.start(cfg.train.prompts_per_step)
    while not fill.done:
        ahead = ahead or submit_round(cfg, parts, step, len(rounds), fill.request_size(), timer)
        with timer("generate"):
            gen = parts.engine.collect(ahead.pending)
        with timer("score"):
            round_ = Round(ahead.prompts, ahead.alloc, gen, score(parts.rewards, ahead.prompts, gen))
        kept = fill.add(ahead.prompts.indices, *round_.group_scores(parts.filter.cfg.rule))
        rounds.add(round_, kept)
        kept_set = set(kept.tolist())
        versions.append((ahead.version, sum(1 for c in gen.completions if c.prompt_index in kept_set)))
        ahead = None
    return rounds, np.asarray(versions, dtype=np.float64)


def staleness(learner_version: int, versions_R2: np.ndarray) -> float:
    """Sequence-weighted mean of (learner version - generating version) over a step's rounds.

    >>> staleness(5, np.array([[4.0, 30], [5.0, 10]]))   # (1 * 30 + 0 * 10) / 40
    0.75
    """
    weights = versions_R2[:, 1]
    return float(((learner_version - versions_R2[:, 0]) * weights).sum() / max(weights.sum(), 1.0))


def async_train_loop(
    cfg: Any,
    parts: Parts,
    state: LoopState,
    save: Callable[[LoopState], None],
    evaluate: Callable[[int], dict[str, float]],
) -> LoopState:
    """`train_loop`'s contract (same arguments, metrics, checkpoints) with one-step-off generation."""
    if not isinstance(parts.engine, PipelinedEngine) or not isinstance(parts.learner, PipelinedLearner):
        raise TypeError(
            "ray.async_steps=1 needs an engine and a learner that work in the background (PipelinedEngine, "
            f"PipelinedLearner: the Ray groups), got {type(parts.engine).__name__} and {type(parts.learner).__name__}"
        )
    ahead: Ahead | None = None
    while state.step < cfg.run.max_steps:
        step = state.step + 1
        timer = StageTimer()
        t_step = time.perf_counter()
        rounds, versions = fill_batch(cfg, parts, step, ahead, timer)
        trained = rounds.trained()
        with timer("advantages"):
            batch, correct_B = build_batch(cfg, trained, parts.pad_id, parts.controllers.batch_weights)
        parts.learner.stats.staleness = staleness(parts.learner.steps, versions)
        with timer("update"):
            refs = parts.learner.submit_update(batch)
            prefetch = step < cfg.run.max_steps and not parts.should_checkpoint(step)
            want = parts.filter.start(cfg.train.prompts_per_step).request_size()  # what the next fill asks first
            ahead = submit_round(cfg, parts, step + 1, 0, want, timer) if prefetch else None
            update = parts.learner.finish_update(refs)
        with timer("observe"):
            parts.controllers.observe(prompt_results(cfg, rounds, update.signal_B))
        with timer("weight_sync"):
            parts.engine.update_weights(parts.learner.export_weights(), wait=False)
        state.step = step
        state.samples_seen += batch.num_seqs
        metrics = {**rollout_metrics(cfg, batch, rounds, correct_B), **update.metrics}
        metrics.update(check_sync(parts, step, trained, timer))  # queued behind the prefetched generation and the sync
        log_eval_checkpoint(parts, state, metrics, timer, t_step, save, evaluate, trained)
    return state
