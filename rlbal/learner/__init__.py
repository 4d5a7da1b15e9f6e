"""The learner: policy updates (plain torch or accelerate + DeepSpeed), checkpoints, pickle-free state I/O.

    learner = make_learner(cfg)                                   # this process is the whole job (or a launch rank)
    learner = make_learner(cfg, make_backend("torch", (rank, W)))  # a Ray learner actor in a formed world

Modules: learner (Learner), loss (StepLoss), backends (TorchBackend, AccelerateBackend, make_backend), world
(OneProcess, ProcessGroup: shards and reductions), contracts (the Protocols: PolicyLearner, LearnerBackend,
DataParallelWorld; UpdateResult), model, checkpoint, state_io.
"""

from __future__ import annotations

from typing import Any


def make_learner(cfg: Any, backend: Any = None) -> Any:
    """A `Learner` for the config, on `backend` (default: `make_backend(cfg.learner.backend)`): the one place
    that hands each part its config sections. Local runs and Ray learner actors both build theirs here."""
    from rlbal.learner.backends import make_backend
    from rlbal.learner.learner import Learner
    from rlbal.learner.loss import StepLoss

    backend = backend if backend is not None else make_backend(cfg.learner.backend)
    loss = StepLoss(
        cfg.algo,
        bapo=cfg.controllers.bapo,
        max_new_tokens=cfg.rollout.max_new_tokens,
        temperature=cfg.rollout.temperature,
        num_bins=cfg.controllers.classifier.num_bins,
        world_size=backend.world.world_size,
    )
    return Learner(cfg.model, cfg.learner, loss, seed=cfg.run.seed, max_steps=cfg.run.max_steps, backend=backend)
