"""The data-parallel world a learner backend runs in: which rows of a batch this rank takes, how many
micro-batches every rank runs, and sums over ranks.

`OneProcess` is the whole job in one process (nothing to split or reduce). `ProcessGroup` is one rank of a
torch.distributed world, formed by `accelerate launch` / torchrun or by hand (`init_world`, the Ray learner
actors; no Ray import here). On it:

- every rank takes a contiguous, token-balanced shard of each mini-batch (`token_balanced_shard`);
- all ranks run the same number of micro-batches (`most_micro_batches`), hence the same collectives;
- metric sums and the per-row signal are all-reduced once per optimizer update (`all_reduce_sums`);
- a backend that keeps the model whole on every rank averages gradients itself (`mean_grads`, one flat
  all-reduce per ~64 MB bucket) and makes the initial weights identical (`broadcast`).
"""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as tdist

from rlbal.batch import RolloutBatch
from rlbal.learner.loss import MAX_PREFIX

BUCKET_BYTES = 64 * 2**20


def default_device() -> torch.device:
    """The first CUDA device when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class OneProcess:
    """The whole job in this process: every row is ours, micro-batches as the token budget cuts them."""

    rank = 0
    world_size = 1
    is_main = True

    def shard(self, batch: RolloutBatch) -> torch.Tensor:
        return torch.arange(batch.num_seqs, device=batch.input_ids_BL.device)

    def most_micro_batches(self, count: int) -> int:
        return count

    def sum_metrics(self, m: dict[str, float]) -> dict[str, float]:
        return m

    def sum_tensor(self, t: torch.Tensor) -> torch.Tensor:
        return t

    def mean_grads(self, params: list[torch.nn.Parameter]) -> None:
        pass

    def broadcast(self, model: torch.nn.Module) -> None:
        pass

    def barrier(self) -> None:
        pass


class ProcessGroup:
    """This rank of an initialised torch.distributed world (see the module docstring)."""

    def __init__(self, rank: int, world_size: int, device: torch.device) -> None:
        self.rank, self.world_size, self.device = rank, world_size, device
        self.is_main = rank == 0

    def shard(self, batch: RolloutBatch) -> torch.Tensor:
        return token_balanced_shard(batch.attention_mask_BL.sum(-1), self.world_size, self.rank)

    def most_micro_batches(self, count: int) -> int:
        """The largest micro-batch count of any rank (every rank must then run that many: the collectives
        inside backward / at the step must match; the learner cuts its plan further, rlbal.micro_batches)."""
        t = torch.tensor([count], device=self.device)
        tdist.all_reduce(t, op=tdist.ReduceOp.MAX)
        return int(t.item())

    def sum_metrics(self, m: dict[str, float]) -> dict[str, float]:
        return all_reduce_sums(m, self.device)

    def sum_tensor(self, t: torch.Tensor) -> torch.Tensor:
        t = t.clone()
        tdist.all_reduce(t)
        return t

    def mean_grads(self, params: list[torch.nn.Parameter]) -> None:
        all_reduce_mean_grads(params, self.world_size)

    def broadcast(self, model: torch.nn.Module) -> None:
        """Rank 0's parameters on every rank: same checkpoint everywhere, but make replication a fact, not a hope."""
        for p in model.parameters():
            tdist.broadcast(p.data, src=0)

    def barrier(self) -> None:
        if tdist.is_initialized():  # a single-process accelerate run has no process group
            tdist.barrier()


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


def all_reduce_sums(m: dict[str, float], device: torch.device) -> dict[str, float]:
    """Metric sums over ranks: `_max:` entries by max (rlbal.learner.loss.merge_sums), the rest by sum.
    Every rank must pass the same keys."""
    out = {}
    for op, keys in (
        (tdist.ReduceOp.SUM, sorted(k for k in m if not k.startswith(MAX_PREFIX))),
        (tdist.ReduceOp.MAX, sorted(k for k in m if k.startswith(MAX_PREFIX))),
    ):
        if keys:
            t = torch.tensor([m[k] for k in keys], dtype=torch.float64, device=device)
            tdist.all_reduce(t, op=op)
            out.update(zip(keys, t.tolist()))
    return out


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
            params[i].grad = flat[offset : offset + n].view_as(params[i])  # a view: no second copy
            offset += n


def init_world(rank: int, world_size: int, master_addr: str, master_port: int, timeout_s: float) -> str:
    """Join the learner process group (gloo on CPU, NCCL on GPU) and export the torchrun-style variables
    (MASTER_ADDR/PORT, RANK, WORLD_SIZE, LOCAL_RANK) that DeepSpeed and accelerate read. Returns the backend."""
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    os.environ.update(
        MASTER_ADDR=master_addr,
        MASTER_PORT=str(master_port),
        RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_RANK="0",
        LOCAL_WORLD_SIZE="1",
    )
    tdist.init_process_group(
        backend,
        init_method=f"tcp://{master_addr}:{master_port}",
        rank=rank,
        world_size=world_size,
        timeout=timedelta(seconds=timeout_s),
    )
    return backend
