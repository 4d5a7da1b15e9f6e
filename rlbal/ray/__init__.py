"""Ray orchestration: rollout engines and learner ranks as Ray actors, behind the interfaces the driver uses.

    run: {orchestrator: ray}
    ray: {rollout_actors: 2, learner_ranks: 2, placement: colocated, cpus_per_actor: 0.5}

`build_ray_parts(cfg, run_dir)` returns the run's `Parts` with `engine` = `RolloutGroup` (K actors,
prompts split by completions, gathered in prompt order, restarts recovered) and `learner` =
`LearnerGroup` (W ranks, one torch.distributed world, weights broadcast through one `ray.put`).
Everything else (data, controllers, rewards, eval, checkpoints, the loop) is the local code.

Modules: placement (bundles, prompt splits, loud waits), rollout_group, learner_group (the learner actors run
rlbal.learner's own backends on a world they form), orchestrator (start-up, tear-down, parts), async_loop
(one-step-off generation), records (WeightsRef, RayStats). See docs/ray.md.
"""

from rlbal.ray.orchestrator import RayOrchestrator, build_ray_parts, loop_for
from rlbal.ray.placement import PlacementPlan, RayStartupError, plan_placement, split_prompts
from rlbal.ray.records import RayStats, WeightsRef

__all__ = [
    "build_ray_parts",
    "loop_for",
    "RayOrchestrator",
    "PlacementPlan",
    "RayStartupError",
    "plan_placement",
    "split_prompts",
    "RayStats",
    "WeightsRef",
]
