"""`build_ray_parts(cfg, run_dir)`: the `Parts` of a run whose engine and learner are Ray actor groups.

`run.orchestrator: ray` changes nothing else in a recipe: data, controllers, rewards, evaluation, logging
and checkpoints are the local ones, built in the driver process by the same `rlbal.assemble.assemble_parts`
as a local run; only `parts.engine` (a `RolloutGroup` of `ray.rollout_actors` engines) and `parts.learner` (a
`LearnerGroup` of `ray.learner_ranks` ranks) are Ray implementations of the same interfaces, so the driver
loop is unchanged.

Start-up, each wait bounded by `ray.init_timeout_s` and failing loudly (RayStartupError) rather than hanging:
connect (or start a local cluster) -> reserve the placement group -> start rollout and learner actors ->
all answer a ping -> learner ranks form their process group and load the model. Any failure tears down what
was started. `parts.close()` (via `RolloutGroup.shutdown`) kills every actor and frees the bundles.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray

from rlbal.ray.learner_group import LearnerGroup, form_world, learner_actor_class
from rlbal.ray.placement import PlacementPlan, bundle_options, create_placement_group, plan_placement, wait_all
from rlbal.ray.records import RayStats
from rlbal.ray.rollout_group import RolloutGroup

# Environment the actors need even when the cluster was started from another shell (`ray start`): offline
# hub, caches of compiled kernels, vLLM's CPU KV-cache size, the quiet console's log levels (rlbal.console;
# its vLLM logging-config file is a local path, so it is not forwarded). Copied from the driver when set there.
FORWARDED_ENV = (
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HF_DATASETS_OFFLINE",
    "RLBAL_CACHE",
    "VLLM_CACHE_ROOT",
    "VLLM_CPU_KVCACHE_SPACE",
    "TORCHINDUCTOR_CACHE_DIR",
    "TORCH_EXTENSIONS_DIR",
    "TRITON_CACHE_DIR",
    "TOKENIZERS_PARALLELISM",
    "HF_HOME",
    "VLLM_LOGGING_LEVEL",
    "HF_HUB_DISABLE_PROGRESS_BARS",
    "TORCH_CPP_LOG_LEVEL",
    "OMP_WAIT_POLICY",
)


def connect(address: str | None) -> None:
    """Join the cluster at `address`, the one a `ray job submit` runs in (RAY_ADDRESS), or start a local one."""
    if ray.is_initialized():
        return
    if address is None and "RAY_ADDRESS" not in os.environ:
        ray.init(include_dashboard=False, log_to_driver=True)
    else:
        ray.init(address=address)


def actor_env() -> dict[str, Any]:
    """`runtime_env` for the run's actors: the forwarded variables; threads follow the actor's CPU share (Ray)."""
    env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    return {"env_vars": env} if env else {}


class RayOrchestrator:
    """Owns what a Ray run starts (placement group, rollout actors, learner actors) and tears it down once."""

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self.max_restarts = cfg.ray.rollout_max_restarts
        self.timeout_s = cfg.ray.init_timeout_s
        self.stats = RayStats()
        self.pg = None
        self.rollout_actors: list[Any] = []
        self.learner_actors: list[Any] = []

    def plan(self) -> PlacementPlan:
        r = self.cfg.ray
        return plan_placement(r.rollout_actors, r.learner_ranks, r.placement, r.cpus_per_actor, r.gpus_per_actor)

    def start(self, model_path: Path, engine_opts: dict[str, Any]) -> tuple[RolloutGroup, LearnerGroup]:
        """Reserve, start, wait, form the learner world; on any failure tear down and re-raise."""
        try:
            return self._start(model_path, engine_opts)
        except BaseException:
            self.teardown()
            raise

    def _start(self, model_path: Path, engine_opts: dict[str, Any]) -> tuple[RolloutGroup, LearnerGroup]:
        from rlbal.rollout.actor import remote_rollout_actor

        r, plan = self.cfg.ray, self.plan()
        self.pg = create_placement_group(plan, self.timeout_s)
        res = dict(num_cpus=r.cpus_per_actor, num_gpus=r.gpus_per_actor, runtime_env=actor_env())
        Rollout = remote_rollout_actor(max_restarts=self.max_restarts, max_task_retries=0, **res)
        self.rollout_actors = [
            Rollout.options(**bundle_options(self.pg, b)).remote(
                self.cfg.rollout.engine, str(model_path), **engine_opts
            )
            for b in plan.rollout_bundle
        ]
        Learner = learner_actor_class(**res)
        world = len(plan.learner_bundle)
        self.learner_actors = [
            Learner.options(**bundle_options(self.pg, b)).remote(self.cfg, rank, world)
            for rank, b in enumerate(plan.learner_bundle)
        ]
        # The world forms while the engines start (both load the model: they overlap).
        pings = [a.ping.remote() for a in self.rollout_actors]
        form_world(self.learner_actors, self.timeout_s)
        incarnations = [reply.incarnation for reply in wait_all(pings, self.timeout_s, "rollout actors (engine start)")]
        rollouts = RolloutGroup(
            self.rollout_actors,
            incarnations,
            self.stats,
            timeout_s=self.timeout_s,
            max_restarts=self.max_restarts,
            on_shutdown=self.teardown,
        )
        # Colocated engines sleep while the learners update; with async_steps=1 they generate meanwhile instead.
        around = (rollouts.sleep, rollouts.wake) if r.placement == "colocated" and not r.async_steps else None
        return rollouts, LearnerGroup(self.learner_actors, self.stats, around_update=around)

    def teardown(self) -> None:
        """Kill every actor of the run and free its bundles (idempotent)."""
        from ray.util.placement_group import remove_placement_group

        for a in self.rollout_actors + self.learner_actors:
            ray.kill(a, no_restart=True)
        self.rollout_actors, self.learner_actors = [], []
        if self.pg is not None:
            remove_placement_group(self.pg)
            self.pg = None


def build_ray_parts(cfg: Any, run_dir: Path) -> Any:
    """Every component of a Ray run (`run.orchestrator: ray`): local data/controllers/rewards/eval, Ray groups."""
    from rlbal.assemble import assemble_parts, engine_options, model_folder

    connect(cfg.ray.address)
    orch = RayOrchestrator(cfg)
    t0 = time.perf_counter()
    rollouts, learners = orch.start(
        model_folder(cfg), engine_options(cfg)
    )  # built once; actors on other nodes need the same path
    r = cfg.ray
    print(
        f"[rlbal.ray] {r.rollout_actors} rollout actor(s) ({cfg.rollout.engine}) + {r.learner_ranks} learner rank(s) "
        f"({cfg.learner.backend}), {r.placement}, async_steps={r.async_steps}: up in {time.perf_counter() - t0:.1f}s",
        flush=True,
    )
    return assemble_parts(cfg, run_dir, rollouts, learners)


def loop_for(cfg: Any) -> Callable[..., Any]:
    """The training loop of a run: `rlbal.driver.train_loop`, or the one-step-off loop for Ray with async_steps=1."""
    from rlbal.driver import train_loop

    if cfg.run.orchestrator == "ray" and cfg.ray.async_steps:
        from rlbal.ray.async_loop import async_train_loop

        return async_train_loop
    return train_loop
