"""rlbal.runtime_env: the thread count (a pure function, by hand), the environment a run sets for itself, and a
real run started without launch/env.sh under `taskset -c 0`."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rlbal.runtime_env import env_defaults, torch_threads

ROOT = Path(__file__).resolve().parents[1]
# What launch/env.sh (or a test runner) may have exported: removed so the run must set them itself.
LAUNCH_VARS = (
    "OMP_NUM_THREADS",
    "OMP_WAIT_POLICY",
    "VLLM_CPU_KVCACHE_SPACE",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HF_DATASETS_OFFLINE",
    "VLLM_CACHE_ROOT",
    "TORCHINDUCTOR_CACHE_DIR",
    "TORCH_EXTENSIONS_DIR",
    "TRITON_CACHE_DIR",
    "TOKENIZERS_PARALLELISM",
    "RAY_AUTH_MODE",
)


@pytest.mark.parametrize(
    "cpus, ranks, engines, threads",
    [
        (2, 1, 0, 2),  # the 2-core box, one process (learner + in-process engine): both cores
        (1, 1, 0, 1),  # taskset -c 0
        (2, 2, 0, 1),  # accelerate with 2 ranks on 2 cores: one each
        (16, 2, 0, 8),
        (3, 2, 0, 1),  # 3 // 2: never more threads than cores in all
        (8, 1, 1, 4),  # learner + a separate vLLM engine process
        (2, 2, 1, 1),  # more processes than cores: still 1 each
    ],
)
def test_torch_threads_by_hand(cpus, ranks, engines, threads):
    assert torch_threads(cpus, ranks, engines) == threads


@pytest.mark.parametrize("args", [(0, 1, 0), (4, 0, 0), (4, -1, 1)])
def test_torch_threads_rejects_nonsense(args):
    with pytest.raises(ValueError, match="torch_threads"):
        torch_threads(*args)


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARS}
    return {**env, **extra}


def test_apply_env_sets_what_is_missing_and_keeps_what_is_given(tmp_path):
    code = (
        "import json, os, sys; from rlbal.runtime_env import apply_env; set_ = apply_env(); "
        "print(json.dumps({'set': sorted(set_), 'env': dict(os.environ), 'torch': 'torch' in sys.modules}))"
    )
    env = _clean_env(RLBAL_CACHE=str(tmp_path / "cache"), HF_HUB_OFFLINE="0")
    out = json.loads(
        subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    )
    want = env_defaults(tmp_path / "cache")
    assert out["set"] == sorted(set(want) - {"HF_HUB_OFFLINE", "RLBAL_CACHE"})
    assert out["env"]["HF_HUB_OFFLINE"] == "0"  # the user's explicit choice wins
    assert out["env"]["VLLM_CACHE_ROOT"] == str(tmp_path / "cache" / "vllm")
    assert out["env"]["OMP_WAIT_POLICY"] == "PASSIVE" and not out["torch"]  # set before torch loads
    assert (tmp_path / "cache").is_dir()


@pytest.mark.slow
@pytest.mark.vllm
def test_a_run_without_launch_env_under_taskset_uses_one_thread_and_a_sized_cache(tmp_path):
    """`python -m rlbal.train` with none of launch/env.sh's variables, pinned to one core: one torch thread, the
    offline hub and caches set by rlbal, and a 1 GiB vLLM KV cache (the batch needs 2.1 MiB) instead of vLLM's
    default share of the RAM."""
    pytest.importorskip("vllm")
    if shutil.which("taskset") is None:
        pytest.skip("taskset not installed")
    args = [
        "model.path=tiny-sft",
        "rollout.engine=vllm",
        "run.max_steps=1",
        "train.prompts_per_step=4",
        "rollout.n=2",
        "rollout.max_new_tokens=8",
        "data.size=8",
        "eval.size=1",
        "eval.k=1",
        "reward.workers=1",
        "logging.progress=false",
        "logging.plots=false",
        "logging.tensorboard=false",
        f"run.output_dir={tmp_path}",
        "run.name=pinned",
    ]
    proc = subprocess.run(
        ["taskset", "-c", "0", sys.executable, "-m", "rlbal.train", *args],
        cwd=ROOT,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    runtime = re.search(r"\[rlbal\] runtime: (.*)", out).group(1)
    assert runtime.startswith("1 torch thread(s) per process (1 CPU(s) in the affinity mask, 1 learner process(es))")
    assert "OMP_WAIT_POLICY=PASSIVE" in runtime
    assert all(name in runtime.split("; kept")[0] for name in ("HF_HUB_OFFLINE", "VLLM_CACHE_ROOT", "OMP_WAIT_POLICY"))
    # 4 prompts x 2 rollouts x (256 + 8) tokens x 1024 B = 2.1 MiB of KV: the 1 GiB floor
    assert "[rlbal] vLLM KV cache: 1 GiB on cpu (2112 tokens x 1024 B = 0.00 GiB, raised to the 1 GiB floor)" in out


FAULTS_CHILD = r"""
import json, os, resource, sys
import torch
from rlbal.runtime_env import keep_freed_memory
done = keep_freed_memory() if sys.argv[1] == "keep" else "not called"
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def rss_mib():  # resident now (ru_maxrss would carry the parent's peak across exec)
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 2**20
out, rss = [], []
for _ in range(12):  # a step's activations: allocated, written, freed; again
    before = faults()
    xs = [torch.ones(n * 2**20 // 4) for n in (64, 16, 48, 8)]  # MiB, far above glibc's mmap threshold
    del xs
    out.append(faults() - before)
    rss.append(rss_mib())
print(json.dumps({"done": done, "faults": out, "rss_mib": rss}))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's allocator")
def test_a_cpu_learner_reuses_freed_memory_without_page_faults():
    """136 MiB in four tensors allocated, written and freed, twelve times: returned to the OS, every round faults
    all of its pages in again; kept in the heap, the last rounds fault (almost) none and the heap stops growing."""

    def run(mode: str, env: dict[str, str] | None = None) -> dict:
        env = {k: v for k, v in (env or os.environ).items() if not k.startswith("MALLOC_")}
        out = subprocess.run([sys.executable, "-c", FAULTS_CHILD, mode], capture_output=True, text=True, env=env)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout.strip().splitlines()[-1])

    plain, kept = run("plain"), run("keep")
    pages = (64 + 16 + 48 + 8) * 2**20 // 4096  # 34,816 pages written per round
    assert all(f >= pages * 0.8 for f in plain["faults"]), plain  # every round faults (nearly) all in again
    assert kept["done"] == "freed memory: kept in the heap (glibc mallopt)"
    # glibc needs a few rounds to settle its heap (aligned blocks do not fit the hole of their predecessor at
    # first: measured 2-6 rounds); then nothing faults and the heap stops growing
    assert sum(kept["faults"][-4:]) < pages * 0.05, kept
    assert kept["rss_mib"][-1] <= kept["rss_mib"][-5] + 8, kept
    given = run("keep", {**os.environ, "MALLOC_ARENA_MAX": "2", "GLIBC_TUNABLES": "glibc.malloc.arena_max=2"})
    assert given["done"] == "freed memory: glibc malloc settings from the environment"  # the user's choice wins
