"""The components of a run and the small record transformations between the driver's stages.

`build_parts(cfg, run_dir)` picks every component from the recipe (the registries live with each part:
engines in rlbal.rollout, losses in rlbal.algo, rewards in reward, controllers in rlbal.controllers), so the
driver loop (`rlbal.driver`) has no variant branches.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from rlbal.algo.advantages import AdvantageOptions, compute_advantages, group_stats
from rlbal.batch import RolloutBatch
from rlbal.controllers import Controllers, FilterConfig, GroupFilter, PromptResult
from rlbal.controllers.records import Allocation
from rlbal.data import PromptBatch, PromptSource, SampledSource, format_from_config, load_prompts, spec_from_config
from rlbal.errors import RewardError
from rlbal.logging import MetricsLogger
from rlbal.rollout.engine import GenerationResult

# Without a configured filter every group is kept in one round: the closed band [0, 1] drops nothing, and a
# prompt drawn twice (a batch that straddles an epoch boundary) trains as two groups.
KEEP_ALL = FilterConfig(rule="band", low=0.0, high=1.0, low_closed=True, high_closed=True, min_group_size=1,
                        max_rounds=1, drop_duplicates=False)


@dataclass
class Round:
    """One generation round: prompts, what the controllers decided, the completions and their scores."""

    prompts: PromptBatch
    alloc: Allocation
    gen: GenerationResult
    scores: Any  # reward.executor.ScoreBatch

    def group_scores(self, rule: str) -> tuple[np.ndarray, np.ndarray]:
        """(R,) per-response value the filter judges (correctness for a pass-rate band, reward for std) and (G,) counts."""
        values = self.scores.correct.astype(np.float64) if rule == "band" else self.scores.scores
        return values, np.asarray(self.gen.counts(), dtype=np.int64)

    def select(self, kept: np.ndarray) -> "Round":
        """Only the prompts at positions `kept` (and their completions and scores)."""
        kept = np.asarray(kept, dtype=np.int64)
        new_pos = np.full(len(self.prompts), -1, dtype=np.int64)
        new_pos[kept] = np.arange(kept.size)
        rows = [i for i, c in enumerate(self.gen.completions) if new_pos[c.prompt_index] >= 0]
        comps = [dataclasses.replace(self.gen.completions[i], prompt_index=int(new_pos[self.gen.completions[i].prompt_index]))
                 for i in rows]
        p = self.prompts
        prompts = PromptBatch(indices=p.indices[kept], keys=[p.keys[i] for i in kept],
                              prompt_token_ids=[p.prompt_token_ids[i] for i in kept], texts=[p.texts[i] for i in kept],
                              answers=[p.answers[i] for i in kept], metas=[p.metas[i] for i in kept],
                              difficulty=p.difficulty[kept])
        a = self.alloc
        alloc = Allocation(a.ids[kept], a.bins[kept], a.weights[kept], a.counts[kept])
        gen = GenerationResult(comps, prompts.prompt_token_ids, self.gen.timings)
        s = self.scores
        outcomes = [s.outcomes[i] for i in rows]
        scores = dataclasses.replace(s, scores=s.scores[rows], outcomes=outcomes, correct=s.correct[rows],
                                     reasons=[s.reasons[i] for i in rows],
                                     counts={k: outcomes.count(k) for k in s.counts})
        return Round(prompts, alloc, gen, scores)


def shaped_rewards(cfg, round_: Round) -> np.ndarray:
    """(R,) the training reward: the scorer's value plus DAPO overlong shaping when configured."""
    rewards = np.asarray(round_.scores.scores, dtype=np.float64)
    if cfg.reward.overlong_buffer > 0:
        from reward.shaping import overlong_penalty

        lengths = [len(c.token_ids) for c in round_.gen.completions]
        rewards = rewards + overlong_penalty(lengths, cfg.rollout.max_new_tokens, cfg.reward.overlong_buffer,
                                             cfg.reward.overlong_penalty)
    return rewards


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


def build_batch(cfg, rounds: list[Round], pad_id: int, weights: Callable[..., np.ndarray]) -> tuple[RolloutBatch, np.ndarray]:
    """One RolloutBatch over the trained rounds, with (unweighted) advantages and the Prompt-GDRO multipliers that
    `weights(bins, counts, adv_mass)` computes over exactly these prompts (per group: class, responses, summed
    |advantage|); and (B,) correctness per row."""
    rounds = [r for r in rounds if r.gen.completions]
    parts = [RolloutBatch.from_generation(r.gen.prompt_token_ids, r.gen.completions, r.prompts.indices.tolist(),
                                          r.alloc.bins.tolist(), [1.0] * len(r.prompts), shaped_rewards(cfg, r).tolist(),
                                          pad_id) for r in rounds]
    batch = RolloutBatch.concat(parts)
    a = cfg.algo
    adv_B = compute_advantages(a.advantage, batch.rewards_B, batch.group_B,
                               AdvantageOptions(std=a.std, eps=a.adv_eps, clip=a.adv_clip))
    group_B = batch.group_B
    G = int(group_B.max()) + 1
    first_G = torch.full((G,), group_B.numel(), dtype=torch.int64).scatter_reduce_(
        0, group_B, torch.arange(group_B.numel()), "amin")  # first row of each group
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
    return PromptResult.from_responses(np.concatenate([r.prompts.indices for r, _ in gen]),
                                       np.concatenate([r.alloc.bins for r, _ in gen]), pidx_R,
                                       np.concatenate([r.scores.correct for r, _ in gen]), reward_R,
                                       signal=cfg.algo.loss_signal, loss_R=loss_R, trained=trained_P)


def generated_rewards(cfg, step: StepRounds) -> tuple[np.ndarray, np.ndarray]:
    """(R,) training reward of every generated completion of the step and (R,) its group (prompt) index."""
    gen = [r for r in step.generated if r.gen.completions]
    offsets = np.cumsum([0] + [len(r.prompts) for r in gen])
    group_R = np.concatenate([off + np.asarray([c.prompt_index for c in r.gen.completions]) for off, r in zip(offsets, gen)])
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
        "reward/mean": float(rewards_B.mean()), "reward/correct_rate": float(np.mean(correct_B)),
        "rollout/len_mean": float(lengths.mean()), "rollout/len_max": float(lengths.max()),
        "rollout/truncated_frac": float(batch.truncated_B.double().mean()),
        "rollout/zero_std_frac": float(flat_G[present].double().mean()),
        "rollout/num_sequences": float(batch.num_seqs), "rollout/num_prompts": float(present.sum()),
        "rollout/rounds": float(len(step)),
        "rollout/per_prompt_min": float(n_G[present].min()), "rollout/per_prompt_max": float(n_G[present].max()),
        "rollout/generated": float(reward_R.size), "rollout/generated_prompts": float(np.unique(gen_group_R).size),
        "rollout/generated_tokens": float(sum(len(c.token_ids) for r in step.generated for c in r.gen.completions)),
        "rollout/informative_frac": float(1.0 - gen_flat_R.mean()),
        "rollout/reward_per_rollout": float(reward_R.mean()),
    }


@dataclass
class Parts:
    """Everything the loop touches. Built by `build_parts`; the Ray orchestrator swaps engine and learner."""

    cfg: Any
    source: PromptSource | SampledSource
    controllers: Controllers
    engine: Any  # RolloutEngine
    rewards: Any  # reward.executor.RewardExecutor
    filter: GroupFilter
    learner: Any  # rlbal.learner.Learner (or a Ray learner group)
    tokenizer: Any
    run_dir: Path
    is_main: bool = True
    barrier: Callable[[], None] = lambda: None
    evaluator: Callable[[int], dict[str, float]] | None = None
    logger: MetricsLogger | None = None
    failed_reward_steps: int = 0  # consecutive steps in which every completion's reward raised or timed out

    def check_rewards(self, step: int, metrics: dict[str, float]) -> None:
        """Stop the run (RewardError) after reward.max_failed_steps consecutive steps in which every
        completion's reward raised or timed out: training on nothing but failure scores is garbage."""
        n = metrics.get("reward/completions", 0.0)
        error, timeout = metrics.get("reward/outcome/error", 0.0), metrics.get("reward/outcome/timeout", 0.0)
        self.failed_reward_steps = self.failed_reward_steps + 1 if n and error + timeout == n else 0
        limit = self.cfg.reward.max_failed_steps
        if limit and self.failed_reward_steps >= limit:
            raise RewardError(f"reward.fn={self.cfg.reward.fn!r} failed on every completion for {limit} consecutive "
                              f"steps (step {step}: {error:.0f} error, {timeout:.0f} timeout of {n:.0f}; the first "
                              "reason of each step is in the warnings above); fix the reward, raise "
                              "reward.timeout_s, or set reward.max_failed_steps (0 = never stop)")

    @property
    def pad_id(self) -> int:
        return int(self.tokenizer.pad_token_id)

    def should_eval(self, step: int) -> bool:
        every = self.cfg.eval.every
        return self.evaluator is not None and ((every and step % every == 0) or step == self.cfg.run.max_steps)

    def should_checkpoint(self, step: int) -> bool:
        every = self.cfg.checkpoint.every
        return (every and step % every == 0) or step == self.cfg.run.max_steps

    def open_logger(self, start_step: int) -> None:
        self.logger = MetricsLogger.from_config(self.cfg, self.run_dir, start_step=start_step, enabled=self.is_main)

    def close(self) -> None:
        if self.logger is not None:
            self.logger.close()
        self.rewards.close()
        shutdown = getattr(self.engine, "shutdown", None)
        if shutdown is not None:
            shutdown()


def build_parts(cfg, run_dir: Path) -> Parts:
    """Every component of a local (single-process or accelerate) run."""
    from rlbal.learner import make_learner
    from rlbal.rollout import make_engine

    learner, dist = make_learner(cfg)
    engine = make_engine(cfg.rollout.engine, _model_folder(cfg), **engine_options(cfg))
    return assemble_parts(cfg, run_dir, engine, learner, is_main=dist.is_main, barrier=dist.barrier)


def assemble_parts(cfg, run_dir: Path, engine: Any, learner: Any, *, is_main: bool = True,
                   barrier: Callable[[], None] = lambda: None) -> Parts:
    """The driver-side components (data, controllers, rewards, filter, eval) around a given engine and learner:
    local runs and the Ray orchestrator (rlbal.ray) differ only in those two."""
    from reward.executor import RewardExecutor
    from rlbal.evaluate import eval_prompts, evaluate
    from rlbal.learner.model import load_tokenizer

    tokenizer = load_tokenizer(cfg.model.path)
    dataset = load_prompts(spec_from_config(cfg.data, cfg.run.seed), tokenizer, format_from_config(cfg.data))
    c = cfg.controllers
    controllers = Controllers.from_configs(c.classifier, c.prompt_gdro, c.rollout, n_rollouts=cfg.rollout.n,
                                           num_prompts=len(dataset))
    sampling = controllers.sampler is not None  # Prompt-GDRO realise='sampling': prompts are drawn by class
    source = SampledSource(dataset, controllers.sample) if sampling else PromptSource(dataset, seed=cfg.run.seed)
    rewards = RewardExecutor(train_reward_specs(cfg), num_workers=cfg.reward.workers, timeout_s=cfg.reward.timeout_s,
                             threshold=cfg.reward.correct_threshold)
    parts = Parts(cfg=cfg, source=source, controllers=controllers, engine=engine,
                  rewards=rewards, filter=GroupFilter(c.filter or KEEP_ALL), learner=learner, tokenizer=tokenizer,
                  run_dir=run_dir, is_main=is_main, barrier=barrier)
    if cfg.eval.every or cfg.eval.size:
        held_out = eval_prompts(cfg, tokenizer)
        ev = cfg.eval

        def evaluator(step: int) -> dict[str, float]:
            out = evaluate(engine, held_out, rewards, k=ev.k, temperature=ev.temperature, top_p=ev.top_p,
                           max_new_tokens=cfg.rollout.max_new_tokens, seed=cfg.run.seed + step,
                           stop=tuple(cfg.rollout.stop))
            rewards.metrics()  # eval has its own eval/outcome/* keys: keep its scores out of the next step's reward/*
            return out

        parts.evaluator = evaluator
    return parts


def _model_folder(cfg) -> Path:
    from rlbal.assets import resolve_model

    return resolve_model(cfg.model.path)


def engine_options(cfg) -> dict[str, Any]:
    """Keyword arguments of `make_engine` from the recipe."""
    opts: dict[str, Any] = dict(dtype=cfg.model.dtype, seed=cfg.run.seed,
                                max_model_len=cfg.data.max_prompt_tokens + cfg.rollout.max_new_tokens)
    if cfg.rollout.engine == "vllm":
        opts.update(gpu_memory_utilization=cfg.rollout.gpu_memory_utilization, enforce_eager=cfg.rollout.enforce_eager,
                    use_tqdm_on_load=cfg.logging.verbose,  # vLLM's weight-loading bar: only when verbose
                    kv_cache_gib=cfg.rollout.kv_cache_gib,  # KV cache sized from the batch (rlbal.rollout.memory)
                    kv_tokens=cfg.train.prompts_per_step * cfg.rollout.n * opts["max_model_len"])
    return opts


def correctness_spec(cfg):
    """The run's correctness reward, with the recipe's extraction mode when the reward takes one (eval uses it alone)."""
    import inspect

    from reward.registry import REWARDS, RewardSpec

    fn = cfg.reward.fn
    takes = fn in REWARDS and "extraction" in inspect.signature(REWARDS[fn]).parameters
    return RewardSpec(fn, {"extraction": cfg.reward.extraction} if takes else {})


def train_reward_specs(cfg) -> tuple:
    """The training reward: correctness + the optional format bonus (DAPO length shaping is added per batch)."""
    from reward.registry import RewardSpec

    specs = [correctness_spec(cfg)]
    if cfg.reward.format_weight > 0:
        specs.append(RewardSpec("format", weight=cfg.reward.format_weight))
    return tuple(specs)
