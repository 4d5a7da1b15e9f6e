"""What the training loop and the learner agree on, and what a learner needs from its backend.

PolicyLearner     the loop's view of a learner: `rlbal.learner.Learner` (one process, or a rank of
                  `accelerate launch`) and the Ray `LearnerGroup` (W learner actors) both satisfy it
UpdateResult      what one policy update hands back to the loop
LearnerBackend    how the model and optimizer run: `TorchBackend`, `AccelerateBackend` (rlbal.learner.backends)
DataParallelWorld the ranks a backend spans: `OneProcess`, `ProcessGroup` (rlbal.learner.world)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:  # annotations only
    import torch

    from rlbal.batch import RolloutBatch
    from rlbal.rollout.engine import Weights


@dataclass
class UpdateResult:
    """What one `PolicyLearner.update` returns to the driver."""

    metrics: dict[str, float]
    signal_B: np.ndarray  # (B,) per-response loss signal (token-mean clipped surrogate, unweighted advantages)
    seconds: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)


class PolicyLearner(Protocol):
    """The policy being trained, as the loop, the post-sync check and checkpoints use it."""

    def update(self, batch: RolloutBatch) -> UpdateResult:
        """One policy update on the step's batch (epochs x mini-batches x micro-batches)."""
        ...

    def score(
        self, prompt_token_ids: Sequence[Sequence[int]], completion_token_ids: Sequence[Sequence[int]]
    ) -> list[list[float]]:
        """log p(completion token | prefix) under the current policy (T = 1), one list per pair."""
        ...

    def export_weights(self) -> Weights:
        """The current weights for the rollout engine's `update_weights`."""
        ...

    def load_weights(self, state: Mapping[str, Any]) -> None:
        """Policy weights (HF names) from a checkpoint."""
        ...

    def save_model(self, folder: Path, is_main: bool) -> None: ...

    def save_state(self, folder: Path, is_main: bool) -> None: ...

    def load_state(self, folder: Path) -> None: ...


@runtime_checkable
class PipelinedLearner(PolicyLearner, Protocol):
    """A PolicyLearner whose update can run while its caller works on (the one-step-off loop,
    `rlbal.ray.async_loop`). Implementation: the Ray learner group."""

    steps: int  # updates done: the version of the weights `export_weights` hands out
    stats: Any  # counters that ride along with every update's metrics (`rlbal.ray.records.RayStats`)

    def submit_update(self, batch: RolloutBatch) -> Any:
        """`update`, started without waiting: returns a handle for `finish_update`."""
        ...

    def finish_update(self, pending: Any) -> UpdateResult:
        """Wait for a `submit_update` and return its result."""
        ...


class DataParallelWorld(Protocol):
    """The ranks a learner backend spans: which rows of a mini-batch this rank takes, how many micro-batches
    every rank runs, sums over ranks."""

    rank: int
    world_size: int
    is_main: bool

    def shard(self, batch: RolloutBatch) -> torch.Tensor: ...

    def most_micro_batches(self, count: int) -> int: ...

    def sum_metrics(self, m: dict[str, float]) -> dict[str, float]: ...

    def sum_tensor(self, t: torch.Tensor) -> torch.Tensor: ...

    def mean_grads(self, params: list[torch.nn.Parameter]) -> None: ...

    def broadcast(self, model: torch.nn.Module) -> None: ...

    def barrier(self) -> None: ...


class LearnerBackend(Protocol):
    """How the learner's model and optimizer run on `world`: preparation, backward, optimizer step, full weights,
    optimizer checkpoints."""

    device: torch.device
    world: DataParallelWorld

    def prepare(self, model: Any, opt: Any, grad_clip: float) -> tuple[Any, Any]: ...

    def backward(self, loss: torch.Tensor, last: bool) -> None: ...

    def step(self, opt: Any, grad_clip: float) -> float:
        """Apply the accumulated gradients; returns the pre-clip gradient norm."""
        ...

    def full_state_dict(self, model: Any) -> dict[str, torch.Tensor]: ...

    def save_optimizer(self, opt: Any, folder: Path) -> None: ...

    def load_optimizer(self, opt: Any, folder: Path) -> None: ...

    def unwrap(self, model: Any) -> Any: ...
