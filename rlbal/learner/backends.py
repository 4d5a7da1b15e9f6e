"""Learner backends: how the model and the optimizer run on a data-parallel world (`rlbal.learner.world`).

- `TorchBackend`: plain torch, the whole model on every rank. In one process (`OneProcess`, the CPU default) it
  is a plain training loop; as W Ray learner actors in a process group formed by hand (`ProcessGroup`) it is
  DDP done explicitly, the simplest thing that is exactly right with rlbal's accumulation: every micro-batch
  loss is already normalised by the *global* mini-batch counts and multiplied by the world size
  (`StepLoss(world_size=W)`), so local gradients are summed over micro-batches and, at the optimizer step,
  averaged over ranks: the single-process gradient of the whole mini-batch, up to float summation order.
  Parameters stay replicated (identical gradients, identical AdamW steps), so the full weights are any rank's
  state dict and rank 0 alone saves the optimizer.
- `AccelerateBackend`: DDP or DeepSpeed ZeRO-2/3, chosen by the `accelerate launch` config. Two details
  matter and are easy to get wrong: accelerate must be told the process-group backend (gloo on CPU; with a
  plain `Accelerator()` under a DeepSpeed launch on CPU it believes it has one process while DeepSpeed runs
  two: both ranks then train on the full batch and reductions return sums, silently wrong); and rlbal
  accumulates over a variable number of micro-batches while DeepSpeed's own accumulation counts a fixed
  number, so the boundary is marked by hand (`set_gradient_accumulation_boundary`) and every rank runs the
  same number of micro-batches (ZeRO reduces gradients inside backward).

`make_backend(kind, rank_world)` is the one constructor, for local runs (this process is the whole job, or a
rank of `accelerate launch`) and for Ray learner actors (a rank of a world they joined with `init_world`; the
accelerate backend then reads the environment `accelerate launch` would have set, `accelerate_env`).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.distributed as tdist

from rlbal.learner.state_io import load_tree, save_tree
from rlbal.learner.world import OneProcess, ProcessGroup, default_device

# The DeepSpeed ZeRO configs `launch/accelerate/zero*.yaml` point at, shipped with the package so Ray learner
# actors on any node read the same file: rlbal drives micro-batches and accumulation itself, so DeepSpeed keeps
# micro batch 1 / accumulation 1 (the backend sets gradient_clipping).
DEEPSPEED_ZERO2 = Path(__file__).with_name("ds_zero2.json")


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


class TorchBackend:
    """Plain torch, model replicated on every rank of `world` (see the module docstring)."""

    def __init__(
        self, device: str | torch.device | None = None, world: OneProcess | ProcessGroup | None = None
    ) -> None:
        self.device = torch.device(device) if device is not None else default_device()
        self.world = world if world is not None else OneProcess()

    def prepare(self, model, opt, grad_clip: float):
        model.to(self.device)  # in place: the optimizer's parameter references stay valid
        self.world.broadcast(model)
        return model, opt

    def backward(self, loss: torch.Tensor, last: bool) -> None:
        loss.backward()  # gradients are averaged over ranks once, in step()

    def step(self, opt, grad_clip: float) -> float:
        self.world.mean_grads([p for g in opt.param_groups for p in g["params"]])
        return clip_and_step(opt, grad_clip)

    def full_state_dict(self, model) -> dict[str, torch.Tensor]:
        return replicated_state_dict(model)

    def save_optimizer(self, opt, folder: Path) -> None:
        if self.world.is_main:  # replicated: one copy is the whole state
            save_tree(opt.state_dict(), folder, "optimizer")

    def load_optimizer(self, opt, folder: Path) -> None:
        opt.load_state_dict(load_tree(folder, "optimizer"))

    def unwrap(self, model):
        return model


class AccelerateBackend:
    """accelerate: DDP, or DeepSpeed ZeRO from the launch config (see the module docstring)."""

    def __init__(self) -> None:
        from accelerate import Accelerator
        from accelerate.utils import InitProcessGroupKwargs

        backend = "nccl" if torch.cuda.is_available() else "gloo"
        self.acc = Accelerator(kwargs_handlers=[InitProcessGroupKwargs(backend=backend)])
        self.device = self.acc.device
        self.world = ProcessGroup(self.acc.process_index, self.acc.num_processes, self.device)
        self.deepspeed = self.acc.distributed_type.name == "DEEPSPEED"
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

    def full_state_dict(self, model) -> dict[str, torch.Tensor]:
        return self.acc.get_state_dict(model)

    def save_optimizer(self, opt, folder: Path) -> None:
        """DeepSpeed: its own sharded checkpoint (every rank writes its shard; the files contain pickled
        DeepSpeed objects, so load only checkpoints you wrote). DDP: the replicated state, pickle-free."""
        if self.engine is not None:
            self.engine.save_checkpoint(str(folder / "deepspeed"), tag="state", save_latest=False)
        elif self.world.is_main:
            save_tree(opt.state_dict(), folder, "optimizer")

    def load_optimizer(self, opt, folder: Path) -> None:
        if self.engine is not None:
            self.engine.load_checkpoint(
                str(folder / "deepspeed"),
                tag="state",
                load_module_strict=False,
                load_optimizer_states=True,
                load_lr_scheduler_states=False,
            )
        else:
            opt.load_state_dict(load_tree(folder, "optimizer"))

    def unwrap(self, model):
        return self.acc.unwrap_model(model)


def accelerate_env(ds_config_file: str | Path) -> dict[str, str]:
    """What `accelerate launch --config_file zero2.yaml` exports, so `AccelerateBackend` builds DeepSpeed ZeRO
    from `ds_config_file` inside a Ray actor (process group and rank variables come from `init_world`)."""
    return {
        "ACCELERATE_USE_DEEPSPEED": "true",
        "ACCELERATE_DEEPSPEED_CONFIG_FILE": str(ds_config_file),
        "ACCELERATE_DEEPSPEED_ZERO3_INIT": "false",
        "ACCELERATE_MIXED_PRECISION": "no",
    }


def make_backend(kind: str, rank_world: tuple[int, int] | None = None) -> TorchBackend | AccelerateBackend:
    """The backend of `learner.backend` = kind ('torch' or 'accelerate'). rank_world=None: this process is the
    whole job, or a rank of `accelerate launch`; (rank, world_size): a rank of a process group already joined
    (`rlbal.learner.world.init_world`, Ray learner actors), where 'accelerate' means DeepSpeed ZeRO-2."""
    if kind == "accelerate":
        if rank_world is not None:
            os.environ.update(accelerate_env(DEEPSPEED_ZERO2))
        return AccelerateBackend()
    if rank_world is None:
        return TorchBackend()
    if not tdist.is_initialized():
        raise RuntimeError("a learner rank needs torch.distributed initialised first (init_world)")
    device = default_device()
    return TorchBackend(device, ProcessGroup(*rank_world, device))
