"""Records shared by the rollout group, the learner group and the orchestrator (no Ray import needed).

`WeightsRef`: the learner's full weights, put once into Ray's object store by learner rank 0 as
`NumpyWeights` (numpy arrays are zero-copy on `ray.get`); every rollout actor receives the same
reference. `RayStats`: the orchestrator's counters and last timings, as flat `ray/...` metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class WeightsRef:
    """Weights in the object store.

    ref:      ray.ObjectRef of a `rlbal.rollout.weight_sync.NumpyWeights`
    nbytes:   payload size
    version:  learner updates behind these weights (0 = the initial checkpoint)
    put_s:    seconds rank 0 spent gathering + `ray.put`
    """

    ref: Any
    nbytes: int
    version: int
    put_s: float = 0.0

    def __post_init__(self) -> None:
        if self.nbytes < 0 or self.version < 0:
            raise ValueError(f"WeightsRef: nbytes={self.nbytes} and version={self.version} must be >= 0")


@dataclass
class RayStats:
    """What the Ray orchestrator did: fault counters (cumulative) and the last weight sync / generation.

    >>> s = RayStats(actor_restarts=1, staleness=1.0)
    >>> s.metrics()["ray/actor_restarts"], s.metrics()["rollout/staleness"]
    (1.0, 1.0)
    """

    actor_restarts: int = 0  # rollout actors that died and came back (a log line each)
    regenerated_prompts: int = 0  # prompts sent again because their actor died or lost its weights
    weight_put_s: float = 0.0  # last sync: learner rank 0 gather + ray.put
    weight_load_s: float = 0.0  # last sync: until every rollout actor had loaded them
    weight_mbytes: float = 0.0
    generate_imbalance: float = 1.0  # last generate: slowest actor's seconds / mean seconds
    generate_overhead_s: float = 0.0  # last generate: driver wall time - slowest actor's own generate time
    update_overhead_s: float = 0.0  # last update: driver wall time - rank 0's own update time (sleep/wake included)
    staleness: float = 0.0  # learner updates between the weights that generated the batch and the update

    def metrics(self) -> dict[str, float]:
        return {
            "ray/actor_restarts": float(self.actor_restarts),
            "ray/regenerated_prompts": float(self.regenerated_prompts),
            "ray/weight_sync/put_s": self.weight_put_s,
            "ray/weight_sync/load_s": self.weight_load_s,
            "ray/weight_sync/mbytes": self.weight_mbytes,
            "ray/generate_imbalance": self.generate_imbalance,
            "ray/overhead/generate_s": self.generate_overhead_s,
            "ray/overhead/update_s": self.update_overhead_s,
            "rollout/staleness": self.staleness,
        }
