"""The learner backend inside Ray learner actors: data parallelism over one torch.distributed world.

`CollectiveBackend` implements the interface of `rlbal.learner.learner.SingleProcess` and
`rlbal.learner.distributed.AccelerateBackend` for W learner actors that formed a process group by hand
(gloo on CPU, NCCL on GPU; `init_world`). It is plain DDP done explicitly, the simplest thing that is
exactly right with rlbal's accumulation:

- every rank takes a contiguous, token-balanced shard of each mini-batch (`token_balanced_shard`, shared
  with `AccelerateBackend`);
- every micro-batch loss is already normalised by the *global* mini-batch counts and multiplied by the
  world size (`StepLoss(world_size=W)`), so local gradients are summed over micro-batches and, at the
  optimizer step, all-reduced (one flat buffer per ~64 MB bucket) and divided by W: the result equals
  the single-process gradient of the whole mini-batch, up to float summation order;
- all ranks run the same number of micro-batches (`equal_micro_batches`), hence the same collectives;
- parameters stay replicated (identical all-reduced gradients, identical AdamW steps), so the full
  weights are any rank's state dict and rank 0 alone saves the optimizer.

DeepSpeed ZeRO inside the actors (`learner.backend=accelerate`) uses rlbal's own `AccelerateBackend`
instead, configured by the environment that `accelerate launch` would set (`accelerate_env`).
"""
from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as tdist

from rlbal.batch import RolloutBatch
from rlbal.learner.distributed import (all_reduce_sum, all_reduce_sums, clip_and_step, equal_micro_batches,
                                      replicated_state_dict, token_balanced_shard)
from rlbal.learner.state_io import load_tree, save_tree

BUCKET_BYTES = 64 * 2**20


def grad_buckets(params: list[torch.nn.Parameter], bucket_bytes: int = BUCKET_BYTES) -> list[list[int]]:
    """Parameter indices per all-reduce bucket, in order, each bucket at most `bucket_bytes` (or one tensor).

    >>> ps = [torch.nn.Parameter(torch.zeros(n)) for n in (3, 3, 5, 1)]   # 12, 12, 20, 4 bytes
    >>> grad_buckets(ps, bucket_bytes=24)
    [[0, 1], [2, 3]]
    """
    buckets: list[list[int]] = []
    size = bucket_bytes + 1  # opens a bucket for the first tensor
    for i, p in enumerate(params):
        nbytes = p.numel() * p.element_size()
        if size + nbytes > bucket_bytes:
            buckets.append([])
            size = 0
        buckets[-1].append(i)
        size += nbytes
    return buckets


def all_reduce_mean_grads(params: list[torch.nn.Parameter], world_size: int, bucket_bytes: int = BUCKET_BYTES) -> None:
    """Replace every grad by its mean over ranks (missing grads count as zero), one flat all-reduce per bucket."""
    for bucket in grad_buckets(params, bucket_bytes):
        grads = [params[i].grad if params[i].grad is not None else torch.zeros_like(params[i]) for i in bucket]
        flat = torch.cat([g.reshape(-1) for g in grads])
        tdist.all_reduce(flat)
        flat.div_(world_size)
        offset = 0
        for i, g in zip(bucket, grads):
            n = g.numel()
            params[i].grad = flat[offset: offset + n].view_as(params[i])  # a view: no second copy
            offset += n


class CollectiveBackend:
    """DDP-style learner backend over an already initialised process group (see the module docstring)."""

    def __init__(self, rank: int, world_size: int) -> None:
        if not tdist.is_initialized():
            raise RuntimeError("CollectiveBackend needs torch.distributed initialised first (init_world)")
        self.rank, self.world_size = rank, world_size
        self.is_main = rank == 0
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    def prepare(self, model, opt, grad_clip: float):
        model.to(self.device)
        for p in model.parameters():  # same checkpoint on every rank, but make replication a fact, not a hope
            tdist.broadcast(p.data, src=0)
        return model, opt

    def shard(self, batch: RolloutBatch) -> torch.Tensor:
        return token_balanced_shard(batch.attention_mask_BL.sum(-1), self.world_size, self.rank)

    def equal_micro_batches(self, batch: RolloutBatch, budget: int) -> list[torch.Tensor]:
        return equal_micro_batches(batch, budget, self.device)

    def backward(self, loss: torch.Tensor, last: bool) -> None:
        loss.backward()  # gradients are reduced once, in step()

    def step(self, opt, grad_clip: float) -> float:
        all_reduce_mean_grads([p for g in opt.param_groups for p in g["params"]], self.world_size)
        return clip_and_step(opt, grad_clip)

    def sum_metrics(self, m: dict[str, float]) -> dict[str, float]:
        return all_reduce_sums(m, self.device)

    def sum_tensor(self, t: torch.Tensor) -> torch.Tensor:
        return all_reduce_sum(t)

    def full_state_dict(self, model) -> dict[str, torch.Tensor]:
        return replicated_state_dict(model)

    def save_optimizer(self, opt, folder: Path) -> None:
        if self.is_main:  # replicated: one copy is the whole state
            save_tree(opt.state_dict(), folder, "optimizer")

    def load_optimizer(self, opt, folder: Path) -> None:
        opt.load_state_dict(load_tree(folder, "optimizer"))

    def unwrap(self, model):
        return model

    def barrier(self) -> None:
        tdist.barrier()


def init_world(rank: int, world_size: int, master_addr: str, master_port: int, timeout_s: float) -> str:
    """Join the learner process group (gloo on CPU, NCCL on GPU) and export the torchrun-style variables
    (MASTER_ADDR/PORT, RANK, WORLD_SIZE, LOCAL_RANK) that DeepSpeed and accelerate read. Returns the backend."""
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    os.environ.update(MASTER_ADDR=master_addr, MASTER_PORT=str(master_port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK="0", LOCAL_WORLD_SIZE="1")
    tdist.init_process_group(backend, init_method=f"tcp://{master_addr}:{master_port}", rank=rank,
                             world_size=world_size, timeout=timedelta(seconds=timeout_s))
    return backend


def accelerate_env(ds_config_file: str | Path) -> dict[str, str]:
    """What `accelerate launch --config_file zero2.yaml` exports, so `AccelerateBackend` builds DeepSpeed ZeRO
    from `ds_config_file` inside an actor (process group and rank variables come from `init_world`)."""
    return {"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_CONFIG_FILE": str(ds_config_file),
            "ACCELERATE_DEEPSPEED_ZERO3_INIT": "false", "ACCELERATE_MIXED_PRECISION": "no"}
