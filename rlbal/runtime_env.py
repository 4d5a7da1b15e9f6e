"""What a run needs from its process environment, set by rlbal itself: a run behaves the same however it starts.

`rlbal train`, `python -m rlbal.train`, `accelerate launch -m rlbal.train` and a Ray job all pass through
`apply_env()` (at the command-line entry, before torch or transformers are imported) and `configure_threads(cfg)`
(first thing in `run_training`), so nothing depends on `source launch/env.sh`:

    offline hub        HF_HUB_OFFLINE, TRANSFORMERS_OFFLINE, HF_DATASETS_OFFLINE = 1 (models are local folders
                       or built assets; a run never downloads)
    caches             RLBAL_CACHE (default ~/.cache/rlbal, or $XDG_CACHE_HOME/rlbal) and, under it, vLLM's,
                       torch inductor's, torch extensions' (DeepSpeed ops) and Triton's compile caches
    tokenizers         TOKENIZERS_PARALLELISM=false (reward workers and vLLM fork after tokenizers ran)
    OpenMP             OMP_WAIT_POLICY=PASSIVE: idle OpenMP threads sleep instead of spinning. With spinning,
                       two runs (or a run and the test suite) on the same cores slowed each other 3-15x
                       (measured: docs/benchmarks.md); sleeping threads degrade to ~2x. Read when torch loads.
    threads            torch's thread count (and OMP_NUM_THREADS for child processes) = the run's share of
                       the CPUs in this process's affinity mask, see `torch_threads`
    vLLM KV cache      set by the engine from the recipe (rlbal.rollout.vllm_engine.kv_cache_plan)
    freed memory       a learner on the CPU keeps the memory it frees in the heap (glibc `mallopt`, see
                       `keep_freed_memory`): every step allocates the same activations again, and returning
                       them to the OS cost 0.6-1.8 million page faults (1-2.6 s) per SmolLM2 step here
    Ray auth           RAY_AUTH_MODE=token: a local cluster of `run.orchestrator=ray` and its clients use a token
                       (~/.ray/auth_token, created by Ray); its GCS listens on all interfaces (docs/ray.md)

Variables already set in the environment win (they are the user's explicit choice) and are reported as such.
`configure_threads` logs both in one line, once per process (rank 0 only under accelerate).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

OFFLINE = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")
_applied: dict[str, str] | None = None
_late: list[str] = []  # modules that read the environment at import and were imported before apply_env
_threads_set: str | None = None  # the OMP_NUM_THREADS value configure_threads wrote (not the user's)
_logged = False


def cache_root() -> Path:
    """RLBAL_CACHE, else $XDG_CACHE_HOME/rlbal, else ~/.cache/rlbal (launch/env.sh uses the same rule)."""
    if os.environ.get("RLBAL_CACHE"):
        return Path(os.environ["RLBAL_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rlbal"


def env_defaults(cache: Path) -> dict[str, str]:
    """The variables a run sets when they are not set already.

    >>> env_defaults(Path("/c"))["VLLM_CACHE_ROOT"], env_defaults(Path("/c"))["HF_HUB_OFFLINE"]
    ('/c/vllm', '1')
    """
    return {
        **dict.fromkeys(OFFLINE, "1"),
        "RLBAL_CACHE": str(cache),
        "VLLM_CACHE_ROOT": str(cache / "vllm"),
        "TORCHINDUCTOR_CACHE_DIR": str(cache / "inductor"),
        "TORCH_EXTENSIONS_DIR": str(cache / "torch_extensions"),
        "TRITON_CACHE_DIR": str(cache / "triton"),
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_WAIT_POLICY": "PASSIVE",
        "RAY_AUTH_MODE": "token",
    }


def apply_env() -> dict[str, str]:
    """Set every missing variable of `env_defaults` (idempotent, silent); returns what this process set. Call it
    before torch / transformers / huggingface_hub are imported: they read some of these at import time."""
    global _applied, _late
    if _applied is None:
        cache = cache_root()
        _late = [m for m in ("torch", "huggingface_hub") if m in sys.modules]
        _applied = {k: v for k, v in env_defaults(cache).items() if k not in os.environ}
        os.environ.update(_applied)
        cache.mkdir(parents=True, exist_ok=True)
    return _applied


def describe_env() -> str:
    """What `apply_env` set, what it found set already, and modules that read the environment at import and were
    imported before it ran (their settings then came from the environment as it was)."""
    applied = apply_env()
    kept = sorted(set(env_defaults(cache_root())) - set(applied))
    return (
        f"set {', '.join(applied) or 'nothing'}{'; kept as given: ' + ', '.join(kept) if kept else ''}"
        f"{'; already imported: ' + ', '.join(_late) if _late else ''}"
    )


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_MALLOC_ENV = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES")


def keep_freed_memory() -> str:
    """Keep freed memory in this process's heap (glibc): no allocation is served by a fresh `mmap`, and the heap
    is never trimmed, so a buffer freed at the end of a step is reused by the next step without page faults.

    A CPU learner allocates the same activations every step; glibc serves large blocks with `mmap` and unmaps
    them on free, so each step faulted its activations in again (measured on SmolLM2-135M, 32 x 92 tokens:
    0.6-1.8 million minor faults and 0.8-2.6 s of system time per forward/backward; none after this call).
    The process's resident memory stays at its peak, as with PyTorch's CUDA caching allocator. Skipped when
    the user set glibc's malloc variables (their choice wins) and off glibc. Returns what was done (one line).
    """
    import ctypes
    import platform

    if set(_MALLOC_ENV) & set(os.environ):
        return "freed memory: glibc malloc settings from the environment"
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return "freed memory: the platform's allocator (not glibc)"
    libc = ctypes.CDLL(None)
    ok = libc.mallopt(_M_MMAP_MAX, 0) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1
    return "freed memory: kept in the heap (glibc mallopt)" if ok else "freed memory: mallopt refused"


def torch_threads(cpus: int, learner_ranks: int = 1, engine_processes: int = 0) -> int:
    """Torch threads per torch process of a run: an equal share of the `cpus` this process may run on.

    The torch processes on this machine are the learner ranks (each with its in-process engine, vLLM or
    transformers) plus any separate engine process (vLLM with `multiprocess=True`). Reward workers are not
    counted: they work only while the loop waits for their scores (its own stage; most completions are
    decided in the driver by the fast path), when the torch threads sleep (OMP_WAIT_POLICY=PASSIVE).

    >>> torch_threads(2), torch_threads(1), torch_threads(16, learner_ranks=2), torch_threads(2, 2, 1)
    (2, 1, 8, 1)
    """
    if cpus < 1 or learner_ranks < 0 or engine_processes < 0 or learner_ranks + engine_processes < 1:
        raise ValueError(
            f"torch_threads: need cpus >= 1 and at least one torch process, got cpus={cpus}, "
            f"learner_ranks={learner_ranks}, engine_processes={engine_processes}"
        )
    return max(1, cpus // (learner_ranks + engine_processes))


def local_learner_ranks(cfg: Any) -> int:
    """Learner processes on this machine: accelerate / torchrun export LOCAL_WORLD_SIZE; 1 otherwise."""
    if cfg.learner.backend == "accelerate":
        return int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))
    return 1


def configure_threads(cfg: Any) -> int | None:
    """Set torch's thread count for this run (before any engine or learner is built) and log it once.
    Ray runs leave it to Ray, which gives each actor OMP_NUM_THREADS = its CPU share; returns None then."""
    global _threads_set, _logged
    apply_env()
    threads, how = None, "Ray gives each actor OMP_NUM_THREADS = its CPU share"
    if cfg.run.orchestrator != "ray":
        import torch

        cpus, ranks = len(os.sched_getaffinity(0)), local_learner_ranks(cfg)
        given = os.environ.get("OMP_NUM_THREADS")
        given = None if given == _threads_set else given
        threads = int(given) if given and given.isdigit() and int(given) > 0 else torch_threads(cpus, ranks)
        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)  # child processes (a separate vLLM engine, compile workers)
        why = (
            "OMP_NUM_THREADS as given" if given else f"{cpus} CPU(s) in the affinity mask, {ranks} learner process(es)"
        )
        how = f"{torch.get_num_threads()} torch thread(s) per process ({why})"
        _threads_set = str(threads)
    if not _logged and os.environ.get("RANK", "0") == "0":
        print(
            f"[rlbal] runtime: {how}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}; "
            f"environment: {describe_env()}",
            flush=True,
        )
        _logged = True
    return threads
