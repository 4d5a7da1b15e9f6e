"""W learner actors forming one torch.distributed world, behind the `Learner` interface the driver uses.

Each `LearnerActor` runs rlbal's own `Learner`, built by the same `rlbal.learner.make_learner` as a local run,
on a backend for its rank (`rlbal.learner.backends.make_backend`): plain torch with gradients averaged over the
ranks (explicit DDP over gloo / NCCL, the default, `learner.backend=torch`) or, with
`learner.backend=accelerate`, DeepSpeed ZeRO-2 from the package's `rlbal/learner/ds_zero2.json`. The world
forms by hand (`rlbal.learner.world.init_world`): rank 0 picks its address and a free port, then all ranks call
`init_process_group` at once; the first forming has a timeout (`ray.init_timeout_s`) and fails loudly instead of
hanging.

`LearnerGroup` (driver side) sends each call to every rank with one object-store copy of its argument
and returns rank 0's answer (all ranks hold the same reduced metrics). `export_weights` makes rank 0
`ray.put` the full weights once and returns a `WeightsRef` for the rollout group.

Faults. A learner rank that dies (or raises) stops the job: the group kills every rank (the others would
wait in a collective until its timeout) and raises `LearnerGroupError`; `run.resume=auto` then continues
from the last complete checkpoint.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import ray

from rlbal.ray.records import RayStats, WeightsRef


class LearnerGroupError(RuntimeError):
    """A learner rank died or failed: the job stops; resume from the last checkpoint (run.resume=auto)."""


class LearnerActor:
    """One learner rank (a plain class; `ray.remote` wraps it in `learner_actor_class`)."""

    def __init__(self, cfg: Any, rank: int, world_size: int) -> None:
        self.cfg, self.rank, self.world_size = cfg, rank, world_size
        self.incarnation = uuid.uuid4().hex
        self.learner = None

    def address(self) -> tuple[str, int]:
        """This node's IP and a free TCP port (rank 0 hosts the rendezvous)."""
        with socket.socket() as s:
            s.bind(("", 0))
            port = s.getsockname()[1]
        return ray.util.get_node_ip_address(), port

    def setup(self, master_addr: str, master_port: int, timeout_s: float) -> str:
        """Join the world, then build the Learner (model, optimizer) on it. Returns the incarnation."""
        from rlbal.learner import make_learner
        from rlbal.learner.backends import make_backend
        from rlbal.learner.world import init_world

        init_world(self.rank, self.world_size, master_addr, master_port, timeout_s)
        backend = make_backend(self.cfg.learner.backend, (self.rank, self.world_size))
        self.learner = make_learner(self.cfg, backend)
        return self.incarnation

    def ping(self) -> str:
        return self.incarnation

    def update(self, batch: Any) -> Any:
        return self.learner.update(batch)

    def score(self, prompt_token_ids: Any, completion_token_ids: Any) -> list[list[float]]:
        return self.learner.score(prompt_token_ids, completion_token_ids)

    def export_weights(self, version: int) -> WeightsRef | None:
        """Every rank gathers (a collective for sharded backends); rank 0 puts the numpy weights once."""
        from rlbal.rollout.weight_sync import to_numpy

        t0 = time.perf_counter()
        state = self.learner.export_weights()
        if self.rank != 0:
            return None
        payload = to_numpy(state)
        return WeightsRef(ray.put(payload), payload.nbytes, version, time.perf_counter() - t0)

    def load_weights(self, weights: Any) -> None:
        from rlbal.rollout.weight_sync import from_numpy

        self.learner.load_weights(from_numpy(weights))  # load_state_dict copies out of the read-only views

    def save_model(self, folder: str) -> None:
        self.learner.save_model(Path(folder), is_main=self.rank == 0)

    def save_state(self, folder: str) -> None:
        self.learner.save_state(Path(folder), is_main=self.rank == 0)

    def load_state(self, folder: str) -> None:
        self.learner.load_state(Path(folder))


def learner_actor_class(**ray_options: Any) -> Any:
    """`ray.remote(**ray_options)(LearnerActor)`: no restarts (a lost rank stops the job: LearnerGroupError)."""
    return ray.remote(max_restarts=0, max_task_retries=0, **ray_options)(LearnerActor)


class LearnerGroup:
    """The learner ranks behind `update / export_weights / save_model / save_state / load_state / load_weights`.

    `around_update` = (before, after) hooks: colocated placement passes the rollout group's sleep / wake.
    `stats.metrics()` (the orchestrator's `ray/...` counters) ride along with every update's metrics.
    """

    def __init__(
        self,
        actors: Sequence[Any],
        stats: RayStats,
        around_update: tuple[Callable[[], None], Callable[[], None]] | None = None,
    ) -> None:
        if not actors:
            raise ValueError("LearnerGroup needs at least one learner actor")
        self.actors = list(actors)
        self.stats = stats
        self.around_update = around_update
        self.steps = 0  # updates done: the version of the weights export_weights hands out
        self._submitted = 0.0  # perf_counter of the last submit_update

    @property
    def world_size(self) -> int:
        return len(self.actors)

    def update(self, batch: Any) -> Any:
        """One policy update on every rank (each takes its shard); rank 0's UpdateResult + `ray/` metrics."""
        return self.finish_update(self.submit_update(batch))

    def submit_update(self, batch: Any) -> list[Any]:
        """Start the update on every rank and return at once (the async loop overlaps generation with it)."""
        self._submitted = time.perf_counter()
        if self.around_update is not None:
            self.around_update[0]()
        ref = ray.put(batch)  # one serialisation for all ranks
        return [a.update.remote(ref) for a in self.actors]

    def finish_update(self, refs: list[Any]) -> Any:
        """Wait for `submit_update`'s calls; rank 0's result (all ranks reduce to the same metrics)."""
        result = self._gather(refs, "update")[0]
        self.steps += 1
        if self.around_update is not None:
            self.around_update[1]()
        self.stats.update_overhead_s = time.perf_counter() - self._submitted - result.seconds
        result.metrics.update(self.stats.metrics())
        return result

    def export_weights(self) -> WeightsRef:
        return self._all("export_weights", self.steps)[0]

    def score(self, prompt_token_ids: Any, completion_token_ids: Any) -> list[list[float]]:
        """Rank 0's logprobs of the pairs (every rank runs the forward: sharded models need all of them)."""
        return self._all("score", prompt_token_ids, completion_token_ids)[0]

    def load_weights(self, state: Any) -> None:
        from rlbal.rollout.weight_sync import to_numpy

        self._all("load_weights", ray.put(to_numpy(state)))

    def save_model(self, folder: Path, is_main: bool = True) -> None:
        self._all("save_model", str(folder))

    def save_state(self, folder: Path, is_main: bool = True) -> None:
        self._all("save_state", str(folder))

    def load_state(self, folder: Path) -> None:
        self._all("load_state", str(folder))

    def shutdown(self) -> None:
        for a in self.actors:
            ray.kill(a, no_restart=True)

    def _all(self, method: str, *args: Any) -> list[Any]:
        return self._gather([getattr(a, method).remote(*args) for a in self.actors], method)

    def _gather(self, refs: list[Any], method: str) -> list[Any]:
        """Results per rank; the first rank that dies or raises stops the group (see the module docstring)."""
        pending = list(refs)
        while pending:
            [ref], pending = ray.wait(pending, num_returns=1)
            try:
                ray.get(ref)
            except ray.exceptions.RayActorError as err:
                self.shutdown()
                raise LearnerGroupError(
                    f"learner rank {refs.index(ref)} died during {method}: the job stops here; run again with "
                    f"run.resume=auto to continue from the last complete checkpoint"
                ) from err
            except ray.exceptions.RayTaskError:
                self.shutdown()  # the other ranks would wait in a collective for this one
                raise
        return ray.get(refs)


def form_world(actors: Sequence[Any], timeout_s: float) -> list[str]:
    """Rendezvous at rank 0's address and build every rank's Learner; RayStartupError after `timeout_s`."""
    from rlbal.ray.placement import wait_all

    [(addr, port)] = wait_all([actors[0].address.remote()], timeout_s, "learner rank 0 address")
    return wait_all(
        [a.setup.remote(addr, port, timeout_s) for a in actors],
        timeout_s,
        "learner process group (init_process_group + model load)",
    )
