"""Where actors go and how work is cut: placement plans, prompt splits, per-chunk seeds, loud waits.

Pure functions first (no Ray): `plan_placement` turns the recipe's `ray` section into bundles and says
which bundle hosts each rollout actor and each learner rank; `split_prompts` cuts a generate call into
contiguous, completion-balanced chunks, one per rollout actor; `chunk_seeds` gives each chunk the seed
that makes a vLLM engine sample exactly what one engine would have sampled for the whole call.

    colocated, 2 rollout actors, 2 learner ranks, 0.5 CPU each:
        bundles [{CPU: 1.0}, {CPU: 1.0}]        bundle b hosts rollout b and learner b (engines sleep during updates)
    disaggregated, same sizes:
        bundles [{CPU: 0.5}] * 4                rollouts in bundles 0, 1; learners in 2, 3

Then the Ray part: `create_placement_group` reserves the bundles and fails loudly (naming what it asked
for and what the cluster has) when they are not granted within the init timeout: Ray itself would leave a
group that does not fit PENDING forever, without an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class PlacementPlan:
    """Bundles to reserve and the bundle of every actor.

    bundles:         one resource dict per bundle ({"CPU": c} plus {"GPU": g} when g > 0)
    rollout_bundle:  (K,) bundle index of rollout actor k
    learner_bundle:  (W,) bundle index of learner rank r
    strategy:        Ray placement strategy ("PACK": as few nodes as possible)
    """

    bundles: tuple[dict[str, float], ...]
    rollout_bundle: tuple[int, ...]
    learner_bundle: tuple[int, ...]
    strategy: str = "PACK"

    def __post_init__(self) -> None:
        used = set(self.rollout_bundle) | set(self.learner_bundle)
        if any(b < 0 or b >= len(self.bundles) for b in used):
            raise ValueError(f"PlacementPlan: actor bundle indices {sorted(used)} outside 0..{len(self.bundles) - 1}")

    def total(self) -> dict[str, float]:
        """Resources of all bundles together (what the cluster must have free)."""
        out: dict[str, float] = {}
        for b in self.bundles:
            for k, v in b.items():
                out[k] = out.get(k, 0.0) + v
        return out


def _bundle(cpus: float, gpus: float, actors: int) -> dict[str, float]:
    out = {"CPU": cpus * actors}
    if gpus > 0:
        out["GPU"] = gpus * actors
    return out


def plan_placement(
    rollout_actors: int, learner_ranks: int, placement: str, cpus_per_actor: float, gpus_per_actor: float = 0.0
) -> PlacementPlan:
    """Bundles for K rollout actors and W learner ranks.

    colocated:      max(K, W) bundles; bundle b hosts rollout actor b (b < K) and learner rank b (b < W), and
                    holds their resources together (two actors with 0.5 GPU each share one GPU).
    disaggregated:  K + W bundles, one per actor: rollouts first, then learners.

    >>> p = plan_placement(2, 1, "colocated", cpus_per_actor=0.5)
    >>> p.bundles, p.rollout_bundle, p.learner_bundle
    (({'CPU': 1.0}, {'CPU': 0.5}), (0, 1), (0,))
    >>> plan_placement(1, 2, "disaggregated", 1.0, 1.0).bundles
    ({'CPU': 1.0, 'GPU': 1.0}, {'CPU': 1.0, 'GPU': 1.0}, {'CPU': 1.0, 'GPU': 1.0})
    """
    if rollout_actors < 1 or learner_ranks < 1:
        raise ValueError(
            f"plan_placement: rollout_actors={rollout_actors} and learner_ranks={learner_ranks} must both be >= 1"
        )
    if cpus_per_actor <= 0 or gpus_per_actor < 0:
        raise ValueError(
            f"plan_placement: cpus_per_actor={cpus_per_actor} must be > 0 and gpus_per_actor={gpus_per_actor} >= 0"
        )
    K, W = rollout_actors, learner_ranks
    if placement == "colocated":
        sizes = [(b < K) + (b < W) for b in range(max(K, W))]
        bundles = tuple(_bundle(cpus_per_actor, gpus_per_actor, n) for n in sizes)
        return PlacementPlan(bundles, tuple(range(K)), tuple(range(W)))
    if placement == "disaggregated":
        bundles = tuple(_bundle(cpus_per_actor, gpus_per_actor, 1) for _ in range(K + W))
        return PlacementPlan(bundles, tuple(range(K)), tuple(range(K, K + W)))
    raise ValueError(f"plan_placement: unknown placement {placement!r}; valid: ['colocated', 'disaggregated']")


def split_prompts(counts_P: Sequence[int], num_chunks: int) -> list[tuple[int, int]]:
    """Contiguous [start, stop) prompt ranges, one per chunk, balancing completions (sum of counts).

    Boundary j sits at the prompt position whose completions-before is closest to j/num_chunks of the
    total, so prompt order (and hence the gathered completion order) is kept. Chunks may be empty.

    >>> split_prompts([2, 7, 3], 2)        # completions before each position: 0, 2, 9, 12; target 6 -> 9
    [(0, 2), (2, 3)]
    >>> split_prompts([1, 1, 1, 1], 3)     # targets 1.33, 2.67 -> positions 1, 3
    [(0, 1), (1, 3), (3, 4)]
    """
    if num_chunks < 1:
        raise ValueError(f"split_prompts: num_chunks must be >= 1, got {num_chunks}")
    counts = np.asarray(counts_P, dtype=np.int64)
    if counts.size == 0:
        return [(0, 0)] * num_chunks
    before_P1 = np.concatenate([[0], np.cumsum(counts)])  # (P+1,) completions before each boundary position
    targets_J = before_P1[-1] * np.arange(1, num_chunks) / num_chunks  # (J,) J = num_chunks - 1
    right_J = np.clip(np.searchsorted(before_P1, targets_J, side="left"), 1, len(counts))
    left_J = right_J - 1
    closer_left = (targets_J - before_P1[left_J]) <= (before_P1[right_J] - targets_J)
    cut_J = np.maximum.accumulate(np.where(closer_left, left_J, right_J))
    edges = [0, *cut_J.tolist(), len(counts)]
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def chunk_seeds(seed: int | None, counts_P: Sequence[int], chunks: Sequence[tuple[int, int]]) -> list[int | None]:
    """The `SamplingSpec.seed` of each chunk: seed + completions before the chunk's first prompt.

    A vLLM engine seeds prompt i of a call with seed + (completions before i in that call) and its j-th
    child with that + j (`rlbal.rollout.vllm_engine.prompt_seeds`), so these offsets give every completion
    the seed it gets when one engine serves the whole call. (The transformers engine seeds whole batches:
    its samples depend on the split.)

    >>> chunk_seeds(10, [2, 7, 3], [(0, 2), (2, 3)])
    [10, 19]
    >>> chunk_seeds(None, [2, 7], [(0, 1), (1, 2)])
    [None, None]
    """
    if seed is None:
        return [None] * len(chunks)
    before_P1 = np.concatenate([[0], np.cumsum(np.asarray(counts_P, dtype=np.int64))])
    return [int(seed + before_P1[start]) for start, _ in chunks]


# ----------------------------------------------------------------------------- Ray


class RayStartupError(RuntimeError):
    """Actors, bundles or the learner process group did not come up within `ray.init_timeout_s`."""


def create_placement_group(plan: PlacementPlan, timeout_s: float) -> Any:
    """Reserve `plan.bundles`; raise RayStartupError (what was asked, what is free) if not ready in time."""
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    pg = placement_group(list(plan.bundles), strategy=plan.strategy)
    ready, _ = ray.wait([pg.ready()], timeout=timeout_s)
    if not ready:
        remove_placement_group(pg)
        raise RayStartupError(
            f"placement group still pending after {timeout_s:g}s (ray.init_timeout_s): it needs {plan.total()} in "
            f"bundles {list(plan.bundles)}, the cluster has {ray.available_resources()} free of "
            f"{ray.cluster_resources()}; lower ray.cpus_per_actor / gpus_per_actor or the actor counts"
        )
    return pg


def bundle_options(pg: Any, bundle: int) -> dict[str, Any]:
    """`.options(...)` keyword arguments that pin an actor to one bundle of `pg`."""
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    return {
        "scheduling_strategy": PlacementGroupSchedulingStrategy(placement_group=pg, placement_group_bundle_index=bundle)
    }


def wait_all(refs: Sequence[Any], timeout_s: float, what: str) -> list[Any]:
    """`ray.get(refs)`, but a RayStartupError naming the laggards when not all are done in `timeout_s`."""
    import ray

    ready, pending = ray.wait(list(refs), num_returns=len(refs), timeout=timeout_s)
    if pending:
        late = [i for i, r in enumerate(refs) if r in set(pending)]
        raise RayStartupError(
            f"{what}: {len(pending)} of {len(refs)} not up after {timeout_s:g}s "
            f"(ray.init_timeout_s), indices {late}; free resources: {ray.available_resources()}"
        )
    return ray.get(list(refs))
