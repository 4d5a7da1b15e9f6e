"""The learner: one policy update per rollout batch (PPO epochs x mini-batches x token-budget micro-batches).

Backends: plain single-process torch (the CPU default), and accelerate (DDP, or DeepSpeed ZeRO-2/3 from the
accelerate launch config). rlbal drives gradient accumulation itself: every micro-batch loss is already
normalised by the *global* mini-batch counts (rlbal.algo), so gradients are summed, never averaged again,
and the number of micro-batches may vary per step. Under data parallelism each rank takes a token-balanced
shard of the mini-batch and scales its loss by the world size (DDP/DeepSpeed average gradients over ranks).
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from rlbal.batch import RolloutBatch
from rlbal.learner.distributed import clip_and_step, replicated_state_dict
from rlbal.learner.loss import StepLoss, mean_over_updates, merge_sums
from rlbal.learner.model import load_causal_lm, token_logprobs
from rlbal.learner.state_io import load_tree, save_tree


@dataclass
class UpdateResult:
    """What one `Learner.update` returns to the driver."""

    metrics: dict[str, float]
    signal_B: np.ndarray  # (B,) per-response loss signal (token-mean clipped surrogate, unweighted advantages)
    seconds: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)


class Learner:
    """Policy (+ frozen reference when KL > 0), AdamW with warm-up/schedule, gradient clipping."""

    def __init__(self, cfg, *, dist=None) -> None:
        self.cfg = cfg
        lc = cfg.learner
        self.dist = dist or SingleProcess()
        torch.manual_seed(cfg.run.seed)
        model = load_causal_lm(cfg.model.path, cfg.model.dtype)
        if cfg.model.gradient_checkpointing:
            model.gradient_checkpointing_enable()
        self.device = self.dist.device
        self.ref = None
        if cfg.algo.kl_coef > 0:
            self.ref = load_causal_lm(cfg.model.path, cfg.model.dtype, trainable=False).to(self.device)
        opt = torch.optim.AdamW(model.parameters(), lr=lc.lr, betas=tuple(lc.betas), weight_decay=lc.weight_decay)
        self.model, self.optimizer = self.dist.prepare(model, opt, grad_clip=lc.grad_clip)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _schedule(lc, self._total_updates()))
        self.loss = StepLoss(cfg, world_size=self.dist.world_size)
        self.temperature = cfg.rollout.temperature or 1.0
        self.updates = 0
        self._rng = np.random.default_rng(cfg.run.seed + 17)

    def _total_updates(self) -> int:
        return self.cfg.run.max_steps * self.cfg.learner.ppo_epochs * self.cfg.learner.mini_batches

    # ------------------------------------------------------------------ logprobs
    @torch.no_grad()
    def _logprobs(self, model, batch: RolloutBatch) -> torch.Tensor:
        out = torch.zeros_like(batch.engine_logp_BL)
        for idx in batch.micro_batch_indices(self.cfg.learner.micro_batch_tokens):
            mb = batch.select(idx)
            logp = token_logprobs(model, mb.input_ids_BL, mb.attention_mask_BL, self.temperature).to(out.dtype)
            out[idx, : logp.shape[1]] = logp
        return out

    def prepare(self, batch: RolloutBatch) -> RolloutBatch:
        """Fill old (when several updates reuse the batch) and reference logprobs."""
        needs_old = self.cfg.learner.ppo_epochs * self.cfg.learner.mini_batches > 1 or self.cfg.algo.loss == "bapo"
        old = self._logprobs(self.model, batch) if needs_old else None
        ref = self._logprobs(self.ref, batch) if self.ref is not None else None
        return dataclasses.replace(batch, old_logp_BL=old, ref_logp_BL=ref)

    # ------------------------------------------------------------------ update
    def update(self, batch: RolloutBatch) -> UpdateResult:
        t0 = time.perf_counter()
        lc = self.cfg.learner
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
        ctx = self.loss.context(mini, self._bapo_ratio(mini))  # global normalisers + BAPO bounds
        shard_idx = self.dist.shard(mini)
        shard = mini.select(shard_idx)
        micro = self.dist.equal_micro_batches(shard, self.cfg.learner.micro_batch_tokens)
        sig = torch.zeros(mini.num_seqs, dtype=torch.float64, device=self.device)
        totals: dict[str, float] = {}
        for i, idx in enumerate(micro):
            mb = shard.select(idx)
            logp_BL, ent_BL = token_logprobs(self.model, mb.input_ids_BL, mb.attention_mask_BL, self.temperature,
                                             with_entropy=True)
            loss, m, sig_b = self.loss(mb, logp_BL, ctx, entropy_BL=ent_BL)
            self.dist.backward(loss, last=i == len(micro) - 1)  # loss already carries the data-parallel scale
            sig[shard_idx[idx]] = sig_b.double()
            merge_sums(totals, m)
        grad_norm = self.dist.step(self.optimizer, self.cfg.learner.grad_clip)
        self.scheduler.step()
        self.updates += 1
        totals = self.dist.sum_metrics(totals)
        sig = self.dist.sum_tensor(sig)
        metrics = self.loss.finalize(totals, ctx)
        metrics["learner/grad_norm"] = float(grad_norm)
        return metrics, sig.cpu().numpy()

    def _bapo_ratio(self, mini: RolloutBatch) -> torch.Tensor | None:
        """Current pi_theta / pi_old for BAPO's search (one extra no-grad forward; None before any update = 1)."""
        if self.cfg.algo.loss != "bapo" or mini.old_logp_BL is None or self._fresh:
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
            logp_1L = token_logprobs(self.model, ids_1L, torch.ones_like(ids_1L), 1.0)
            out.append(logp_1L[0, len(p):].float().cpu().tolist())
        return out

    def export_weights(self) -> dict[str, torch.Tensor]:
        """Full (gathered) HF-named parameters for the rollout engine; every rank must call it."""
        return self.dist.full_state_dict(self.model)

    def load_weights(self, state: dict[str, torch.Tensor]) -> None:
        """Policy weights from a checkpoint (HF names; a tied lm_head may be absent)."""
        model = self.dist.unwrap(self.model)
        missing, unexpected = model.load_state_dict(state, strict=False)
        tied = getattr(model.config, "tie_word_embeddings", False)
        bad = [k for k in missing if not (tied and k == "lm_head.weight")]
        if bad or unexpected:
            raise RuntimeError(f"checkpoint weights do not match the model: missing {bad[:5]}, unexpected {unexpected[:5]}")

    def save_model(self, folder, is_main: bool) -> None:
        state = self.export_weights()
        if is_main:
            model = self.dist.unwrap(self.model)
            if getattr(model.config, "tie_word_embeddings", False):
                # DeepSpeed's gathered state dict repeats a tied lm_head as a separate tensor; save the HF layout
                state = {k: v for k, v in state.items() if k != "lm_head.weight"}
            model.save_pretrained(folder, state_dict=state, safe_serialization=True)

    def save_state(self, folder: Path, is_main: bool) -> None:
        """Optimizer (the backend's format), scheduler, update counter and the learner's RNG."""
        self.dist.save_optimizer(self.optimizer, folder)
        if is_main:
            save_tree({"scheduler": self.scheduler.state_dict(), "updates": self.updates,
                       "rng": self._rng.bit_generator.state}, folder, "learner")

    def load_state(self, folder: Path) -> None:
        self.dist.load_optimizer(self.optimizer, folder)
        state = load_tree(folder, "learner")
        self.scheduler.load_state_dict(state["scheduler"])
        self.updates = int(state["updates"])
        self._rng.bit_generator.state = state["rng"]


def _schedule(lc, total: int):
    def factor(update: int) -> float:
        if update < lc.warmup_steps:
            return (update + 1) / lc.warmup_steps
        if lc.schedule == "constant":
            return 1.0
        progress = min(1.0, (update - lc.warmup_steps) / max(1, total - lc.warmup_steps))
        return 0.5 * (1 + math.cos(math.pi * progress)) if lc.schedule == "cosine" else 1.0 - progress

    return factor


class SingleProcess:
    """Single-process backend: plain torch, no communication; the model lives on `device` (the first CUDA
    device when there is one, else the CPU)."""

    world_size = 1
    rank = 0
    is_main = True

    def __init__(self, device: str | torch.device | None = None) -> None:
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))

    def prepare(self, model, opt, grad_clip):
        model.to(self.device)  # in place: the optimizer's parameter references stay valid
        return model, opt

    def shard(self, batch: RolloutBatch) -> torch.Tensor:
        return torch.arange(batch.num_seqs, device=batch.input_ids_BL.device)

    def equal_micro_batches(self, batch: RolloutBatch, budget: int):
        return batch.micro_batch_indices(budget)

    def backward(self, loss, last: bool) -> None:
        loss.backward()

    def step(self, opt, grad_clip: float) -> float:
        return clip_and_step(opt, grad_clip)

    def sum_metrics(self, m):
        return m

    def sum_tensor(self, t):
        return t

    def full_state_dict(self, model):
        return replicated_state_dict(model)

    def save_optimizer(self, opt, folder: Path) -> None:
        save_tree(opt.state_dict(), folder, "optimizer")

    def load_optimizer(self, opt, folder: Path) -> None:
        opt.load_state_dict(load_tree(folder, "optimizer"))

    def unwrap(self, model):
        return model

    def barrier(self) -> None:
        pass
