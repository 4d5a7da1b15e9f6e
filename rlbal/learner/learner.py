"""The learner: one policy update per rollout batch (PPO epochs x mini-batches x token-budget micro-batches).

It runs on a backend (rlbal.learner.backends): plain torch in one process (the CPU default) or as Ray learner
ranks, or accelerate (DDP, or DeepSpeed ZeRO-2/3 from the accelerate launch config). rlbal drives gradient
accumulation itself: every micro-batch loss is already normalised by the *global* mini-batch counts
(rlbal.algo), so gradients are summed, never averaged again, and the number of micro-batches may vary per step.
Under data parallelism each rank takes a token-balanced shard of the mini-batch and scales its loss by the
world size (the backend averages gradients over ranks).

`rlbal.learner.make_learner(cfg)` builds one from a config; the learner itself takes only the sections it reads.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlbal.batch import RolloutBatch
from rlbal.learner import shared_prompt
from rlbal.learner.backends import TorchBackend
from rlbal.learner.contracts import LearnerBackend, UpdateResult
from rlbal.learner.loss import StepLoss, mean_over_updates, merge_sums
from rlbal.learner.model import load_causal_lm, token_logprobs
from rlbal.learner.state_io import load_tree, save_tree

CPU_CALL_TOKENS = 128  # a CPU forward/backward call's fixed cost in padded tokens (LearnerConfig docs)


class Learner:
    """Policy (+ frozen reference when the loss needs one), AdamW with warm-up/schedule, gradient clipping.

    model: the `model` config section; lc: the `learner` section; loss: the step's loss (its world size is the
    backend's); seed: run.seed; max_steps: run.max_steps (the length of the learning-rate schedule).
    """

    def __init__(
        self, model: Any, lc: Any, loss: StepLoss, *, seed: int, max_steps: int, backend: LearnerBackend | None = None
    ) -> None:
        self.lc = lc
        self.backend = backend or TorchBackend()
        torch.manual_seed(seed)
        policy = load_causal_lm(model.path, model.dtype)
        if model.gradient_checkpointing:
            policy.gradient_checkpointing_enable()
        self.device = self.backend.device
        if self.device.type == "cpu":
            from rlbal.runtime_env import keep_freed_memory

            keep_freed_memory()  # the same activations every step: reuse them without page faults
        self.micro_overhead = lc.micro_batch_overhead_tokens
        if self.micro_overhead is None and self.device.type == "cpu":
            self.micro_overhead = CPU_CALL_TOKENS
        self.ref = None
        if loss.needs_reference:
            self.ref = load_causal_lm(model.path, model.dtype, trainable=False).to(self.device)
        # fused: one kernel over all parameters (6.5x faster than the per-tensor loop on one CPU thread for
        # SmolLM2-135M, docs/benchmarks.md); same AdamW update up to float rounding
        opt = torch.optim.AdamW(
            policy.parameters(), lr=lc.lr, betas=tuple(lc.betas), weight_decay=lc.weight_decay, fused=True
        )
        self.model, self.optimizer = self.backend.prepare(policy, opt, grad_clip=lc.grad_clip)
        self.share_prompt = _share_prompt(lc.share_prompt_forward, self.model, model.gradient_checkpointing)
        total_updates = max_steps * lc.ppo_epochs * lc.mini_batches
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _schedule(lc, total_updates))
        self.loss = loss
        self.temperature = loss.opts.temperature  # the rollout's (1 for greedy): logits / T as the engine sampled
        self.updates = 0
        self._rng = np.random.default_rng(seed + 17)

    # ------------------------------------------------------------------ logprobs
    @torch.no_grad()
    def _logprobs(self, model, batch: RolloutBatch) -> torch.Tensor:
        out = torch.zeros_like(batch.engine_logp_BL)
        for idx in self.micro_batches(batch):
            logp = self.forward(model, batch.select(idx)).to(out.dtype)
            out[idx, : logp.shape[1]] = logp
        return out

    def micro_batches(self, batch: RolloutBatch, count: int | None = None) -> list[torch.Tensor]:
        """Row indices of each forward over `batch`: within the token budget, for the least padded tokens +
        per-call cost (rlbal.micro_batches), whole groups together when prompts are shared; exactly `count` of
        them when given (data-parallel ranks)."""
        budget, overhead = self.lc.micro_batch_tokens, self.micro_overhead
        if self.share_prompt:
            runs = shared_prompt.micro_batches(batch, budget, overhead, count)
            if runs is not None:
                return runs
        return batch.micro_batch_indices(budget, overhead, count)

    def forward(self, model, mb: RolloutBatch, with_entropy: bool = False):
        """(B, L) logprobs of `mb`'s completion tokens under `model` (and entropies when with_entropy): one
        prompt forward per group (rlbal.learner.shared_prompt) when the policy shares prompts and a group has
        two rows here, else one forward over the rows."""
        mask = mb.completion_mask_BL
        if self.share_prompt and shared_prompt.shares_any(mb.group_B) and bool(mask.any()):
            return shared_prompt.shared_prompt_logprobs(
                model, mb.input_ids_BL, mb.attention_mask_BL, mask, mb.group_B, self.temperature, with_entropy
            )
        return token_logprobs(
            model, mb.input_ids_BL, mb.attention_mask_BL, self.temperature, with_entropy, loss_mask_BL=mask
        )

    def prepare(self, batch: RolloutBatch) -> RolloutBatch:
        """Fill old (when several updates reuse the batch) and reference logprobs."""
        needs_old = self.lc.ppo_epochs * self.lc.mini_batches > 1 or self.loss.needs_old_logprobs
        old = self._logprobs(self.model, batch) if needs_old else None
        ref = self._logprobs(self.ref, batch) if self.ref is not None else None
        return dataclasses.replace(batch, old_logp_BL=old, ref_logp_BL=ref)

    # ------------------------------------------------------------------ update
    def update(self, batch: RolloutBatch) -> UpdateResult:
        t0 = time.perf_counter()
        lc = self.lc
        batch = self.prepare(batch.to(self.device))
        self._fresh = True  # the first update sees ratio 1 exactly
        signal_B = np.zeros(batch.num_seqs, dtype=np.float64)
        per_update: list[dict[str, float]] = []
        for epoch in range(lc.ppo_epochs):
            order = self._rng.permutation(batch.num_seqs) if lc.mini_batches > 1 else np.arange(batch.num_seqs)
            for part in np.array_split(order, lc.mini_batches):
                rows = np.sort(part)
                m, sig = self._update_mini(batch.select(torch.as_tensor(rows)))
                self._fresh = False
                if epoch == 0:  # the controllers see the signal of the first pass (closest to on-policy)
                    signal_B[rows] = sig
                per_update.append(m)
        metrics = mean_over_updates(per_update)
        metrics["learner/lr"] = self.scheduler.get_last_lr()[0]
        return UpdateResult(metrics=metrics, signal_B=signal_B, seconds=time.perf_counter() - t0)

    def _update_mini(self, mini: RolloutBatch) -> tuple[dict[str, float], np.ndarray]:
        ctx = self.loss.context(mini, self._search_ratio(mini))  # global normalisers + BAPO bounds
        world = self.backend.world
        shard_idx = world.shard(mini)
        shard = mini.select(shard_idx)
        micro = self.micro_batches(shard)
        most = world.most_micro_batches(len(micro))  # every rank runs as many backward passes
        if most > len(micro):
            micro = self.micro_batches(shard, count=most)
        sig = torch.zeros(mini.num_seqs, dtype=torch.float64, device=self.device)
        totals: dict[str, float] = {}
        for i, idx in enumerate(micro):
            # a rank with fewer rows than calls runs a row of the mini-batch without loss tokens (zero gradient)
            mb = shard.select(idx) if len(idx) else _without_loss(mini.select([0]))
            logp_BL, ent_BL = self.forward(self.model, mb, with_entropy=True)
            loss, m, sig_b = self.loss(mb, logp_BL, ctx, entropy_BL=ent_BL)
            self.backend.backward(loss, last=i == len(micro) - 1)  # loss already carries the data-parallel scale
            if len(idx):
                sig[shard_idx[idx]] = sig_b.double()
            merge_sums(totals, m)
        grad_norm = self.backend.step(self.optimizer, self.lc.grad_clip)
        self.scheduler.step()
        self.updates += 1
        totals = world.sum_metrics(totals)
        sig = world.sum_tensor(sig)
        metrics = self.loss.finalize(totals, ctx)
        metrics["learner/grad_norm"] = float(grad_norm)
        return metrics, sig.cpu().numpy()

    def _search_ratio(self, mini: RolloutBatch) -> torch.Tensor | None:
        """Current pi_theta / pi_old for the clip-bounds search (BAPO): one extra no-grad forward; None before any
        update (ratio 1)."""
        if not self.loss.needs_bounds or mini.old_logp_BL is None or self._fresh:
            return None
        cur = self._logprobs(self.model, mini)
        return torch.exp((cur - mini.old_logp_BL).clamp(-20, 20)) * mini.completion_mask_BL

    # ------------------------------------------------------------------ weights / state
    @torch.no_grad()
    def score(self, prompt_token_ids, completion_token_ids) -> list[list[float]]:
        """log p(completion token | prefix) under the current policy (T = 1, full vocabulary), one list per pair:
        the engines' `score` contract, the learner's side of the post-sync check (`rlbal.driver.check_sync`).
        Under data parallelism every rank calls it (a sharded model's forward is a collective)."""
        out = []
        for p, c in zip(prompt_token_ids, completion_token_ids, strict=True):
            ids_1L = torch.tensor([list(p) + list(c)], device=self.device)
            mask_1L = (torch.arange(ids_1L.shape[1], device=self.device) >= len(p)).unsqueeze(0)
            logp_1L = token_logprobs(self.model, ids_1L, torch.ones_like(ids_1L), 1.0, loss_mask_BL=mask_1L)
            out.append(logp_1L[0, len(p) :].float().cpu().tolist())
        return out

    def export_weights(self) -> dict[str, torch.Tensor]:
        """Full (gathered) HF-named parameters for the rollout engine; every rank must call it."""
        return self.backend.full_state_dict(self.model)

    def load_weights(self, state: dict[str, torch.Tensor]) -> None:
        """Policy weights from a checkpoint (HF names; a tied lm_head may be absent)."""
        model = self.backend.unwrap(self.model)
        missing, unexpected = model.load_state_dict(state, strict=False)
        tied = getattr(model.config, "tie_word_embeddings", False)
        bad = [k for k in missing if not (tied and k == "lm_head.weight")]
        if bad or unexpected:
            raise RuntimeError(
                f"checkpoint weights do not match the model: missing {bad[:5]}, unexpected {unexpected[:5]}"
            )

    def save_model(self, folder, is_main: bool) -> None:
        state = self.export_weights()
        if is_main:
            model = self.backend.unwrap(self.model)
            if getattr(model.config, "tie_word_embeddings", False):
                # DeepSpeed's gathered state dict repeats a tied lm_head as a separate tensor; save the HF layout
                state = {k: v for k, v in state.items() if k != "lm_head.weight"}
            model.save_pretrained(folder, state_dict=state, safe_serialization=True)

    def save_state(self, folder: Path, is_main: bool) -> None:
        """Optimizer (the backend's format), scheduler, update counter and the learner's RNG."""
        self.backend.save_optimizer(self.optimizer, folder)
        if is_main:
            save_tree(
                {
                    "scheduler": self.scheduler.state_dict(),
                    "updates": self.updates,
                    "rng": self._rng.bit_generator.state,
                },
                folder,
                "learner",
            )

    def load_state(self, folder: Path) -> None:
        self.backend.load_optimizer(self.optimizer, folder)
        state = load_tree(folder, "learner")
        self.scheduler.load_state_dict(state["scheduler"])
        self.updates = int(state["updates"])
        self._rng.bit_generator.state = state["rng"]


def _without_loss(mb: RolloutBatch) -> RolloutBatch:
    return dataclasses.replace(mb, completion_mask_BL=torch.zeros_like(mb.completion_mask_BL))


def _share_prompt(setting: bool | None, model, gradient_checkpointing: bool) -> bool:
    """learner.share_prompt_forward resolved: None = wherever it can run; True where it cannot is an error."""
    ok = shared_prompt.supported(model)
    if setting and not ok:
        why = (
            "model.gradient_checkpointing is on (transformers turns the cache off)"
            if gradient_checkpointing
            else "the backend wraps the model (DDP / DeepSpeed), or its cache drops keys (sliding window)"
        )
        raise ValueError(f"learner.share_prompt_forward=true cannot run here: {why}; set it to null or false")
    return ok if setting is None else setting


def _schedule(lc, total: int):
    def factor(update: int) -> float:
        if update < lc.warmup_steps:
            return (update + 1) / lc.warmup_steps
        if lc.schedule == "constant":
            return 1.0
        progress = min(1.0, (update - lc.warmup_steps) / max(1, total - lc.warmup_steps))
        return 0.5 * (1 + math.cos(math.pi * progress)) if lc.schedule == "cosine" else 1.0 - progress

    return factor
