"""The learner: policy updates (plain torch or accelerate + DeepSpeed), checkpoints, pickle-free state I/O."""
from __future__ import annotations


def make_learner(cfg):
    """(Learner, backend) for `cfg.learner.backend`: 'torch' (one process) or 'accelerate' (DDP / DeepSpeed)."""
    from rlbal.learner.learner import Learner, SingleProcess

    if cfg.learner.backend == "accelerate":
        from rlbal.learner.distributed import AccelerateBackend

        dist = AccelerateBackend()
    else:
        dist = SingleProcess()
    return Learner(cfg, dist=dist), dist
