"""The accelerate backend of the learner: DDP or DeepSpeed ZeRO-2/3, chosen by the `accelerate launch` config.

Two details matter and are easy to get wrong:
- accelerate must be told the process-group backend (gloo on CPU). With a plain `Accelerator()` under a
  DeepSpeed launch on CPU it believes it has one process while DeepSpeed runs two: both ranks then train
  on the full batch and reductions return sums (silently wrong).
- rlbal accumulates over a variable number of micro-batches. DeepSpeed's own accumulation counts a fixed
  number, so we mark the boundary by hand (`set_gradient_accumulation_boundary`) and every rank runs the
  same number of micro-batches (ZeRO reduces gradients inside backward).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.distributed as tdist

from rlbal.batch import RolloutBatch
from rlbal.learner.loss import MAX_PREFIX
from rlbal.learner.state_io import load_tree, save_tree


def token_balanced_shard(tokens_B: torch.Tensor, world_size: int, rank: int) -> torch.Tensor:
    """Row indices of `rank`'s contiguous shard: row b goes to the rank whose equal share of the token total
    holds the row's token midpoint (every rank gets at least one row when there are enough).

    >>> token_balanced_shard(torch.tensor([4, 4, 4, 4]), world_size=2, rank=1)   # midpoints 2 6 10 14 of 16
    tensor([2, 3])
    >>> token_balanced_shard(torch.tensor([10, 1, 1, 1, 1]), world_size=2, rank=0)   # 5/14 -> rank 0 only
    tensor([0])
    """
    tokens = tokens_B.double()
    mid = torch.cumsum(tokens, 0) - tokens / 2
    owner = torch.clamp((mid / tokens.sum() * world_size).long(), max=world_size - 1)
    return torch.nonzero(owner == rank).flatten()


def equal_micro_batches(batch: RolloutBatch, budget: int, device: torch.device) -> list[torch.Tensor]:
    """This rank's micro-batches, re-split so that every rank runs the same number of backward passes (the
    collectives inside backward / at the step must match); chunks may be empty."""
    mine = batch.micro_batch_indices(budget) if batch.num_seqs else []
    count = torch.tensor([len(mine)], device=device)
    tdist.all_reduce(count, op=tdist.ReduceOp.MAX)
    n = int(count.item())
    if len(mine) == n:
        return mine
    return [torch.as_tensor(c, dtype=torch.long) for c in np.array_split(np.arange(batch.num_seqs), n)]


def all_reduce_sums(m: dict[str, float], device: torch.device) -> dict[str, float]:
    """Metric sums over ranks: `_max:` entries by max (rlbal.learner.loss.merge_sums), the rest by sum.
    Every rank must pass the same keys."""
    out = {}
    for op, keys in ((tdist.ReduceOp.SUM, sorted(k for k in m if not k.startswith(MAX_PREFIX))),
                     (tdist.ReduceOp.MAX, sorted(k for k in m if k.startswith(MAX_PREFIX)))):
        if keys:
            t = torch.tensor([m[k] for k in keys], dtype=torch.float64, device=device)
            tdist.all_reduce(t, op=op)
            out.update(zip(keys, t.tolist()))
    return out


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    t = t.clone()
    tdist.all_reduce(t)
    return t


def clip_and_step(opt, grad_clip: float) -> float:
    """Clip the gradient norm of every parameter `opt` updates, step, clear; returns the pre-clip norm."""
    params = [p for g in opt.param_groups for p in g["params"]]
    norm = torch.nn.utils.clip_grad_norm_(params, grad_clip)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return float(norm)


def replicated_state_dict(model) -> dict[str, torch.Tensor]:
    """The full weights of a model every rank holds whole (single process, DDP-style replication)."""
    return {k: v.detach() for k, v in model.state_dict().items()}


class AccelerateBackend:
    def __init__(self) -> None:
        from accelerate import Accelerator
        from accelerate.utils import InitProcessGroupKwargs

        backend = "nccl" if torch.cuda.is_available() else "gloo"
        self.acc = Accelerator(kwargs_handlers=[InitProcessGroupKwargs(backend=backend)])
        self.world_size = self.acc.num_processes
        self.rank = self.acc.process_index
        self.is_main = self.acc.is_main_process
        self.deepspeed = self.acc.distributed_type.name == "DEEPSPEED"
        self.device = self.acc.device
        self.engine = None

    def prepare(self, model, opt, grad_clip: float):
        if self.deepspeed:
            ds = self.acc.state.deepspeed_plugin.deepspeed_config
            ds["gradient_clipping"] = grad_clip
            ds["gradient_accumulation_steps"] = 1
        model, opt = self.acc.prepare(model, opt)
        if self.deepspeed:
            self.engine = model
        return model, opt

    # ----------------------------------------------------------------- data split
    def shard(self, batch: RolloutBatch) -> torch.Tensor:
        return token_balanced_shard(batch.attention_mask_BL.sum(-1), self.world_size, self.rank)

    def equal_micro_batches(self, batch: RolloutBatch, budget: int) -> list[torch.Tensor]:
        return equal_micro_batches(batch, budget, self.device)

    # ----------------------------------------------------------------- step
    def backward(self, loss: torch.Tensor, last: bool) -> None:
        if self.engine is not None:
            self.engine.set_gradient_accumulation_boundary(last)
            self.engine.backward(loss)
            self.engine.step()  # applies the optimizer only at the boundary
        elif last:
            self.acc.backward(loss)
        else:
            with self.acc.no_sync(self.acc._models[0]):
                self.acc.backward(loss)

    def step(self, opt, grad_clip: float) -> float:
        if self.engine is not None:
            norm = self.engine.get_global_grad_norm()
            return float(norm) if norm is not None else float("nan")
        norm = self.acc.clip_grad_norm_(self.acc._models[0].parameters(), grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(norm)

    # ----------------------------------------------------------------- reductions / weights
    def sum_metrics(self, m: dict[str, float]) -> dict[str, float]:
        return all_reduce_sums(m, self.device)

    def sum_tensor(self, t: torch.Tensor) -> torch.Tensor:
        return all_reduce_sum(t)

    def full_state_dict(self, model) -> dict[str, torch.Tensor]:
        return self.acc.get_state_dict(model)

    def save_optimizer(self, opt, folder: Path) -> None:
        """DeepSpeed: its own sharded checkpoint (every rank writes its shard; the files contain pickled
        DeepSpeed objects, so load only checkpoints you wrote). DDP: the replicated state, pickle-free."""
        if self.engine is not None:
            self.engine.save_checkpoint(str(folder / "deepspeed"), tag="state", save_latest=False)
        elif self.is_main:
            save_tree(opt.state_dict(), folder, "optimizer")

    def load_optimizer(self, opt, folder: Path) -> None:
        if self.engine is not None:
            self.engine.load_checkpoint(str(folder / "deepspeed"), tag="state", load_module_strict=False,
                                        load_optimizer_states=True, load_lr_scheduler_states=False)
        else:
            opt.load_state_dict(load_tree(folder, "optimizer"))

    def unwrap(self, model):
        return self.acc.unwrap_model(model)

    def barrier(self) -> None:
        self.acc.wait_for_everyone()
