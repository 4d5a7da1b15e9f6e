"""What one training step does to its records, between the driver's stages (`rlbal.driver` times and calls them).

    PromptBatch + Allocation -> engine -> GenerationResult -> rewards -> ScoreBatch     one `Round`
    rounds of one step (online filtering may need several)                            `StepRounds`
    the kept groups -> RolloutBatch with advantages and Prompt-GDRO weights            `build_batch`
    every generated group + the learner's per-row signal -> PromptResult               `prompt_results`
    the step's rollout statistics                                                      `rollout_metrics`

Pure functions of plain records (no engine, learner or process here), so they are unit-tested on small
hand-built rounds (tests/test_step.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from rlbal.algo.advantages import AdvantageOptions, compute_advantages, group_stats
from rlbal.batch import RolloutBatch
from rlbal.controllers import PromptResult
from rlbal.controllers.records import Allocation
from rlbal.data import PromptBatch
from rlbal.rollout.engine import GenerationResult, SamplingSpec


@dataclass
class Round:
    """One generation round: prompts, what the controllers decided, the completions and their scores."""

    prompts: PromptBatch
    alloc: Allocation
    gen: GenerationResult
    scores: Any  # reward.executor.ScoreBatch

    def group_scores(self, rule: str) -> tuple[np.ndarray, np.ndarray]:
        """(R,) per-response value the filter judges (correctness for a pass-rate band, reward for std) and (G,)
        counts."""
        values = self.scores.correct.astype(np.float64) if rule == "band" else self.scores.scores
        return values, np.asarray(self.gen.counts(), dtype=np.int64)

    def select(self, kept: np.ndarray) -> Round:
        """Only the prompts at positions `kept` (and their completions and scores)."""
        kept = np.asarray(kept, dtype=np.int64)
        new_pos = np.full(len(self.prompts), -1, dtype=np.int64)
        new_pos[kept] = np.arange(kept.size)
        rows = [i for i, c in enumerate(self.gen.completions) if new_pos[c.prompt_index] >= 0]
        comps = [
            dataclasses.replace(
                self.gen.completions[i], prompt_index=int(new_pos[self.gen.completions[i].prompt_index])
            )
            for i in rows
        ]
        prompts = self.prompts.select(kept)
        a = self.alloc
        alloc = Allocation(a.ids[kept], a.bins[kept], a.weights[kept], a.counts[kept])
        gen = GenerationResult(comps, prompts.prompt_token_ids, self.gen.timings)
        s = self.scores
        outcomes = [s.outcomes[i] for i in rows]
        scores = dataclasses.replace(
            s,
            scores=s.scores[rows],
            outcomes=outcomes,
            correct=s.correct[rows],
            reasons=[s.reasons[i] for i in rows],
            counts={k: outcomes.count(k) for k in s.counts},
        )
        return Round(prompts, alloc, gen, scores)


@dataclass
class StepRounds:
    """Every generation round of one step (as generated and scored) and which of its groups were kept."""

    generated: list[Round] = dataclasses.field(default_factory=list)
    kept: list[np.ndarray] = dataclasses.field(default_factory=list)

    def add(self, round_: Round, kept: np.ndarray) -> None:
        self.generated.append(round_)
        self.kept.append(np.asarray(kept, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.generated)

    def trained(self) -> list[Round]:
        """The kept groups of every round: what the batch is built from."""
        return [r.select(k) for r, k in zip(self.generated, self.kept)]


def sampling_for(cfg, step: int, round_: int) -> SamplingSpec:
    """Per-step seeds make generation reproducible on resume (same weights + same seed = same samples)."""
    r = cfg.rollout
    return SamplingSpec(
        max_new_tokens=r.max_new_tokens,
        temperature=r.temperature,
        top_p=r.top_p,
        top_k=r.top_k,
        stop=tuple(r.stop),
        seed=(cfg.run.seed * 1_000_003 + step * 1_009 + round_) % (2**31),
    )


def score(rewards, prompts: PromptBatch, gen: GenerationResult):
    """Rewards of a round's completions (a `reward.executor.ScoreBatch`), each against its own prompt's answer
    and metadata; `rewards` is the run's reward executor."""
    return rewards.score(
        [c.text for c in gen.completions],
        [prompts.answers[c.prompt_index] for c in gen.completions],
        [prompts.metas[c.prompt_index] for c in gen.completions],
    )


def shaped_rewards(cfg, round_: Round) -> np.ndarray:
    """(R,) the training reward: the scorer's value plus DAPO overlong shaping when configured."""
    rewards = np.asarray(round_.scores.scores, dtype=np.float64)
    if cfg.reward.overlong_buffer > 0:
        from reward.shaping import overlong_penalty

        lengths = [len(c.token_ids) for c in round_.gen.completions]
        rewards = rewards + overlong_penalty(
            lengths, cfg.rollout.max_new_tokens, cfg.reward.overlong_buffer, cfg.reward.overlong_penalty
        )
    return rewards


def build_batch(
    cfg, rounds: list[Round], pad_id: int, weights: Callable[..., np.ndarray]
) -> tuple[RolloutBatch, np.ndarray]:
    """One RolloutBatch over the trained rounds, with (unweighted) advantages and the Prompt-GDRO multipliers that
    `weights(bins, counts, adv_mass)` computes over exactly these prompts (per group: class, responses, summed
    |advantage|); and (B,) correctness per row."""
    rounds = [r for r in rounds if r.gen.completions]
    parts = [
        RolloutBatch.from_generation(
            r.gen.prompt_token_ids,
            r.gen.completions,
            r.prompts.indices.tolist(),
            r.alloc.bins.tolist(),
            [1.0] * len(r.prompts),
            shaped_rewards(cfg, r).tolist(),
            pad_id,
        )
        for r in rounds
    ]
    batch = RolloutBatch.concat(parts)
    a = cfg.algo
    adv_B = compute_advantages(
        a.advantage, batch.rewards_B, batch.group_B, AdvantageOptions(std=a.std, eps=a.adv_eps, clip=a.adv_clip)
    )
    group_B = batch.group_B
    G = int(group_B.max()) + 1
    first_G = torch.full((G,), group_B.numel(), dtype=torch.int64).scatter_reduce_(
        0, group_B, torch.arange(group_B.numel()), "amin"
    )  # first row of each group
    counts_G = torch.bincount(group_B, minlength=G).numpy()
    mass_G = torch.zeros(G, dtype=torch.float64).index_add_(0, group_B, adv_B.double().abs()).numpy()
    w_G = torch.as_tensor(np.asarray(weights(batch.bin_B[first_G].numpy(), counts_G, mass_G), dtype=np.float32))
    correct_B = np.concatenate([r.scores.correct for r in rounds])
    return dataclasses.replace(batch, advantages_B=adv_B, weight_B=w_G[group_B]), correct_B


def prompt_results(cfg, step: StepRounds, signal_B: np.ndarray) -> PromptResult:
    """Per-prompt outcome of *every* group the step generated and scored, the trained ones marked, for the
    controllers: the classifier and Rollout-GDRO must see the groups online filtering dropped (they are exactly
    the all-wrong / all-right ones). Reward-derived signals exist for every group; the learner's surrogate
    (`signal_B`, one per batch row, in the trained rounds' completion order) only for trained ones."""
    gen = [(r, k) for r, k in zip(step.generated, step.kept) if r.gen.completions]
    offsets = np.cumsum([0] + [len(r.prompts) for r, _ in gen])
    trained_P = np.zeros(int(offsets[-1]), dtype=bool)
    for off, (_, k) in zip(offsets, gen):
        trained_P[off + k] = True
    reward_R, pidx_R = generated_rewards(cfg, step)
    loss_R = None
    if cfg.algo.loss_signal in ("surrogate", "surrogate_kl"):
        loss_R = np.full(pidx_R.size, np.nan)
        loss_R[trained_P[pidx_R]] = signal_B
    return PromptResult.from_responses(
        np.concatenate([r.prompts.indices for r, _ in gen]),
        np.concatenate([r.alloc.bins for r, _ in gen]),
        pidx_R,
        np.concatenate([r.scores.correct for r, _ in gen]),
        reward_R,
        signal=cfg.algo.loss_signal,
        loss_R=loss_R,
        trained=trained_P,
    )


def generated_rewards(cfg, step: StepRounds) -> tuple[np.ndarray, np.ndarray]:
    """(R,) training reward of every generated completion of the step and (R,) its group (prompt) index."""
    gen = [r for r in step.generated if r.gen.completions]
    offsets = np.cumsum([0] + [len(r.prompts) for r in gen])
    group_R = np.concatenate(
        [off + np.asarray([c.prompt_index for c in r.gen.completions]) for off, r in zip(offsets, gen)]
    )
    return np.concatenate([shaped_rewards(cfg, r) for r in gen]), group_R


def rollout_metrics(cfg, batch: RolloutBatch, step: StepRounds, correct_B: np.ndarray) -> dict[str, float]:
    """Rollout statistics of the step: reward, correctness, lengths, truncation and zero-variance groups of the
    trained batch; and over everything generated: rollouts spent, the share of them in groups with a non-zero
    advantage (rewards not all equal), reward per rollout."""
    rewards_B, group_B = batch.rewards_B.double(), batch.group_B
    n_G = torch.bincount(group_B).double()
    flat_G = torch.zeros(n_G.numel(), dtype=torch.bool).index_put_((group_B,), group_stats(rewards_B, group_B).flat_B)
    present = n_G > 0
    lengths = batch.completion_len_B.double()
    reward_R, gen_group_R = generated_rewards(cfg, step)
    gen_flat_R = group_stats(torch.as_tensor(reward_R), torch.as_tensor(gen_group_R)).flat_B.numpy()
    return {
        "reward/mean": float(rewards_B.mean()),
        "reward/correct_rate": float(np.mean(correct_B)),
        "rollout/len_mean": float(lengths.mean()),
        "rollout/len_max": float(lengths.max()),
        "rollout/truncated_frac": float(batch.truncated_B.double().mean()),
        "rollout/zero_std_frac": float(flat_G[present].double().mean()),
        "rollout/num_sequences": float(batch.num_seqs),
        "rollout/num_prompts": float(present.sum()),
        "rollout/rounds": float(len(step)),
        "rollout/per_prompt_min": float(n_G[present].min()),
        "rollout/per_prompt_max": float(n_G[present].max()),
        "rollout/generated": float(reward_R.size),
        "rollout/generated_prompts": float(np.unique(gen_group_R).size),
        "rollout/generated_tokens": float(sum(len(c.token_ids) for r in step.generated for c in r.gen.completions)),
        "rollout/informative_frac": float(1.0 - gen_flat_R.mean()),
        "rollout/reward_per_rollout": float(reward_R.mean()),
    }
