"""Ray orchestration overhead: step time in Ray mode vs local mode, and weight-sync cost per GB.

    source launch/env.sh
    .venv/bin/python benchmarks/bench_ray.py                        # both parts (~5 min on 2 cores)
    .venv/bin/python benchmarks/bench_ray.py --part steps --steps 8 --rounds 2
    .venv/bin/python benchmarks/bench_ray.py --part paired --size recipe --repeats 7
    .venv/bin/python benchmarks/bench_ray.py --part sync --sync-mb 64 256 1024

Part "steps": the same GDRO config (tiny-sft, vLLM; `--size small` = 8 prompts x 4 rollouts x 16 tokens, the
tests' size; `--size recipe` = recipes/gdro.yaml's 32 x 4 x 32) runs for
`--steps` steps in local mode (one process) and in Ray mode with 1 rollout actor + 1 learner rank (pure
orchestration overhead: same work, now behind actor calls, the object store and a gloo world of one) and
with 2 + 2. Each run is a child process with the driver loop (`rlbal.driver.train_loop`) and no eval or
checkpoints; the first step (warm-up) is dropped and the median of `timing/step` and of each stage is
reported. "vs local" = ray step / local step - 1 (target: < 10% on CPU); "in-run" = the orchestration time
measured inside each Ray run (`ray/overhead/generate_s` + `ray/overhead/update_s`: driver wall time minus the
actors' own generate / update time) as a share of its step, which is immune to load drifting between runs.
Every process runs with OMP_NUM_THREADS=1
(`--threads`): Ray gives a 0.5-CPU actor one thread, and on a 2-core box shared with other jobs a
2-thread process that loses a core slows down many times over (docs/engines.md), which would compare
thread contention rather than orchestration.

Part "paired": the step's engine and learner stages (generate the batch, update on it, sync the weights),
called on local objects (`make_engine`, `make_learner`) and on Ray groups of 1 + 1 actors *alternately* in
one process, on the same inputs: both see the same machine load, so the difference is the orchestration
cost (calls, object store, serialisation, sleep/wake) of a step, free of run-to-run drift. Median of
`--repeats`. (Driver-side stages, data, scoring, controllers, are the same code in both modes.)

Part "sync": one fp32 state dict of `--sync-mb` MB (64 MB tensors) goes learner -> rollout actor the way
the Ray run sends weights: `ray.put` of numpy arrays once, then one actor call with the reference; the
actor reads the arrays zero-copy and copies them into its own preallocated parameters (what an engine's
reload does). Reported per GB: put, actor load (call round trip), total, against a plain in-process
memcpy of the same bytes into preallocated buffers. Median of `--repeats`.
Prints tables and one JSON line per measurement (`--out` appends them to a file).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STEP_OVERRIDES = [
    "data.size=64",
    "eval.size=1",
    "reward.workers=1",
    "logging.plots=false",
    "logging.tensorboard=false",
    "logging.progress=false",
    "checkpoint.every=0",
    "run.resume=never",
    "rollout.engine=vllm",
]
# "small": the tests' size; "recipe": recipes/gdro.yaml's own batch (32 prompts x 4 rollouts x 32 tokens)
SIZES = {"small": ["train.prompts_per_step=8", "rollout.max_new_tokens=16"], "recipe": []}
MODES = {
    "local": [],
    "ray_1x1": ["run.orchestrator=ray", "ray.rollout_actors=1", "ray.learner_ranks=1"],
    "ray_2x2": ["run.orchestrator=ray", "ray.rollout_actors=2", "ray.learner_ranks=2"],
}


# ----------------------------------------------------------------------------- part "steps"


def child_run(mode: str, steps: int, out_dir: str, name: str, size: str) -> None:
    """One run of the driver loop (no eval, no checkpoints) in this process; metrics.jsonl in out_dir/name."""
    from rlbal.config import load_config
    from rlbal.driver import LoopState, train_loop

    cfg = load_config(
        ROOT / "recipes" / "gdro.yaml",
        [
            f"run.name={name}",
            f"run.output_dir={out_dir}",
            f"run.max_steps={steps}",
            *STEP_OVERRIDES,
            *SIZES[size],
            *MODES[mode],
        ],
    )
    if cfg.run.orchestrator == "ray":
        import ray

        from rlbal.ray import build_ray_parts

        ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
        parts = build_ray_parts(cfg, Path(out_dir) / name)
    else:
        from rlbal.assemble import build_parts

        parts = build_parts(cfg, Path(out_dir) / name)
    parts.evaluator = None  # timing the training step only
    parts.open_logger(start_step=0)
    try:
        train_loop(cfg, parts, LoopState(), save=lambda state: None, evaluate=lambda step: {})
    finally:
        parts.close()


def stage_stats(metrics_path: Path) -> dict[str, float]:
    """Median and minimum over steps 2.. of every timing/* (step 1 is warm-up). On a shared machine the minimum
    is the steadier estimate of what a step costs; the median shows what it cost under the load of the day."""
    rows = [json.loads(line) for line in metrics_path.read_text().splitlines()]
    rows = [r for r in rows if r["step"] >= 2]
    keys = sorted({k for r in rows for k in r if k.startswith(("timing/", "ray/overhead/"))})
    out = {k: statistics.median(r.get(k, 0.0) for r in rows) for k in keys}
    out.update({f"min/{k}": min(r.get(k, 0.0) for r in rows) for k in keys})
    return out


def bench_steps(steps: int, modes: list[str], rounds: int, threads: int, size: str) -> list[dict]:
    """Every mode `rounds` times, interleaved (load on a shared box drifts); per mode the median over rounds."""
    out_dir = tempfile.mkdtemp(prefix="bench_ray_")
    per_mode: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
    for r in range(rounds):
        for mode in modes:
            name = f"{mode}-{r}"
            subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    mode,
                    "--steps",
                    str(steps),
                    "--dir",
                    out_dir,
                    "--name",
                    name,
                    "--size",
                    size,
                ],
                check=True,
                cwd=ROOT,
                env={**os.environ, "OMP_NUM_THREADS": str(threads)},
            )
            per_mode[mode].append(stage_stats(Path(out_dir) / name / "metrics.jsonl"))
    results = [
        {
            "part": "steps",
            "mode": m,
            "size": size,
            "steps": steps,
            "rounds": rounds,
            **{k: statistics.median(run[k] for run in runs) for k in runs[0]},
        }
        for m, runs in per_mode.items()
    ]
    for stat in ("", "min/"):  # the first mode is the reference (local by default)
        base = results[0][f"{stat}timing/step"]
        print(f"\nstep time, {stat.rstrip('/') or 'median'} over steps 2..{steps}, median over {rounds} round(s), s")
        print(f"{'mode':>8} {'step':>7} {'generate':>9} {'update':>7} {'w_sync':>7} {'vs local':>9} {'in-run':>7}")
        for r in results:
            r[f"{stat}overhead"] = r[f"{stat}timing/step"] / base - 1.0
            # measured inside the Ray run itself: driver wall - the actors' own time, for generate and update
            inner = r.get(f"{stat}ray/overhead/generate_s", 0.0) + r.get(f"{stat}ray/overhead/update_s", 0.0)
            r[f"{stat}in_run_share"] = inner / r[f"{stat}timing/step"]
            print(
                f"{r['mode']:>8} {r[f'{stat}timing/step']:7.3f} {r.get(f'{stat}timing/generate', 0):9.3f} "
                f"{r.get(f'{stat}timing/update', 0):7.3f} {r.get(f'{stat}timing/weight_sync', 0):7.3f} "
                f"{r[f'{stat}overhead']:+9.1%} {r[f'{stat}in_run_share']:7.1%}"
            )
    return results


# ----------------------------------------------------------------------------- part "paired"


def paired_batch(cfg, engine, rng):
    """One step's rollout batch: the recipe's prompt count x rollout.n completions, random 0/1 rewards."""
    import dataclasses

    from rlbal.algo.advantages import compute_advantages
    from rlbal.batch import RolloutBatch
    from rlbal.step import sampling_for

    P, n = cfg.train.prompts_per_step, cfg.rollout.n
    prompts = [rng.integers(5, 500, size=24).tolist() for _ in range(P)]
    gen = engine.generate(prompts, [n] * P, sampling_for(cfg, 1, 0))
    rewards = rng.integers(0, 2, size=len(gen.completions)).astype(float).tolist()
    batch = RolloutBatch.from_generation(prompts, gen.completions, list(range(P)), [0] * P, [1.0] * P, rewards, 0)
    return prompts, dataclasses.replace(batch, advantages_B=compute_advantages("grpo", batch.rewards_B, batch.group_B))


def bench_paired(size: str, repeats: int) -> list[dict]:
    """The step's three engine/learner stages, local objects and Ray groups alternately on the same inputs."""
    import numpy as np
    import ray

    from rlbal.assemble import engine_options, model_folder
    from rlbal.config import load_config
    from rlbal.learner import make_learner
    from rlbal.ray import RayOrchestrator
    from rlbal.rollout import make_engine
    from rlbal.step import sampling_for

    cfg = load_config(ROOT / "recipes" / "gdro.yaml", [*STEP_OVERRIDES, *SIZES[size], *MODES["ray_1x1"]])
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    orch = RayOrchestrator(cfg)
    group_engine, group_learner = orch.start(model_folder(cfg), engine_options(cfg))
    engine = make_engine(cfg.rollout.engine, model_folder(cfg), **engine_options(cfg))
    learner = make_learner(cfg)
    prompts, batch = paired_batch(cfg, engine, np.random.default_rng(0))
    counts, spec = [cfg.rollout.n] * len(prompts), sampling_for(cfg, 1, 0)
    stages = {
        "generate": (
            lambda: engine.generate(prompts, counts, spec),
            lambda: group_engine.generate(prompts, counts, spec),
        ),
        "update": (lambda: learner.update(batch), lambda: group_learner.update(batch)),
        "weight_sync": (
            lambda: engine.update_weights(learner.export_weights()),
            lambda: group_engine.update_weights(group_learner.export_weights()),
        ),
    }
    times = {(s, m): [] for s in stages for m in ("local", "ray")}
    for _ in range(repeats + 1):  # the first round warms up
        for stage, (local_fn, ray_fn) in stages.items():
            for mode, fn in (("local", local_fn), ("ray", ray_fn)):
                t0 = time.perf_counter()
                fn()
                times[stage, mode].append(time.perf_counter() - t0)
    orch.teardown()
    ray.shutdown()
    row = {"part": "paired", "size": size, "repeats": repeats}
    row.update({f"{m}/{s}": statistics.median(times[s, m][1:]) for s, m in times})
    row["local/step"] = sum(row[f"local/{s}"] for s in stages)
    row["ray/step"] = sum(row[f"ray/{s}"] for s in stages)
    row["overhead"] = row["ray/step"] / row["local/step"] - 1.0
    print(f"\npaired stages ({size}), median of {repeats}, seconds")
    print(f"{'stage':>12} {'local':>7} {'ray':>7} {'extra':>7}")
    for s in [*stages, "step"]:
        print(f"{s:>12} {row[f'local/{s}']:7.3f} {row[f'ray/{s}']:7.3f} {row[f'ray/{s}'] - row[f'local/{s}']:+7.3f}")
    print(f"ray overhead on the engine + learner stages: {row['overhead']:+.1%}")
    return [row]


# ----------------------------------------------------------------------------- part "sync"


class Loader:
    """A stand-in for a rollout engine's weight reload: copy received arrays into preallocated parameters."""

    def __init__(self, shapes: list[tuple[int, ...]]) -> None:
        import torch

        self.params = [torch.empty(s) for s in shapes]

    def load(self, payload) -> float:
        import torch

        from rlbal.rollout.weight_sync import from_numpy

        t0 = time.perf_counter()
        with torch.no_grad():
            for p, t in zip(self.params, from_numpy(payload).values()):
                p.copy_(t)
        return time.perf_counter() - t0


def bench_sync(sizes_mb: list[int], repeats: int) -> list[dict]:
    import ray
    import torch

    from rlbal.rollout.weight_sync import to_numpy

    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        object_store_memory=int(max(sizes_mb) * 2.5 * 2**20) + 2**28,
    )
    results = []
    for mb in sizes_mb:
        n = max(1, mb // 64)  # 64 MB tensors
        state = {f"layer.{i}.weight": torch.randn(mb * 2**20 // 4 // n) for i in range(n)}
        actor = ray.remote(num_cpus=1)(Loader).remote([tuple(t.shape) for t in state.values()])
        dst = [torch.empty_like(t) for t in state.values()]
        ray.get(actor.load.remote(ray.put(to_numpy(state))))  # warm-up (actor start, first allocation)
        put, load, memcpy, inner = [], [], [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            ref = ray.put(to_numpy(state))
            t1 = time.perf_counter()
            inner.append(ray.get(actor.load.remote(ref)))
            t2 = time.perf_counter()
            for d, s in zip(dst, state.values()):
                d.copy_(s)
            memcpy.append(time.perf_counter() - t2)
            put.append(t1 - t0)
            load.append(t2 - t1)
            del ref
        gb = sum(t.numel() * 4 for t in state.values()) / 2**30
        row = {
            "part": "sync",
            "mbytes": gb * 1024,
            "put_s_per_gb": statistics.median(put) / gb,
            "load_s_per_gb": statistics.median(load) / gb,
            "actor_copy_s_per_gb": statistics.median(inner) / gb,
            "memcpy_s_per_gb": statistics.median(memcpy) / gb,
        }
        row["total_s_per_gb"] = row["put_s_per_gb"] + row["load_s_per_gb"]
        row["vs_memcpy"] = row["total_s_per_gb"] / row["memcpy_s_per_gb"]
        results.append(row)
        ray.kill(actor)
    ray.shutdown()
    print("\nweight sync, seconds per GB (median)")
    print(f"{'MB':>6} {'put':>7} {'load':>7} {'total':>7} {'memcpy':>7} {'x memcpy':>9}")
    for r in results:
        print(
            f"{r['mbytes']:6.0f} {r['put_s_per_gb']:7.3f} {r['load_s_per_gb']:7.3f} {r['total_s_per_gb']:7.3f} "
            f"{r['memcpy_s_per_gb']:7.3f} {r['vs_memcpy']:9.1f}"
        )
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=["steps", "paired", "sync", "all"], default="all")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--rounds", type=int, default=1, help="repeat the modes, interleaved; report medians")
    p.add_argument("--size", choices=list(SIZES), default="small")
    p.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of every process (Ray's actors: 1)")
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    p.add_argument("--sync-mb", type=int, nargs="+", default=[64, 256, 1024])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=None, help="append JSON lines here")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--dir", default=None, help=argparse.SUPPRESS)
    p.add_argument("--name", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # before torch is imported here or in a child
    if args.child:
        return child_run(args.child, args.steps, args.dir, args.name, args.size)
    results = []
    if args.part in ("steps", "all"):
        results += bench_steps(args.steps, args.modes, args.rounds, args.threads, args.size)
    if args.part in ("paired", "all"):
        results += bench_paired(args.size, args.repeats)
    if args.part in ("sync", "all"):
        results += bench_sync(args.sync_mb, args.repeats)
    for r in results:
        line = json.dumps(r)
        print(line)
        if args.out:
            with open(args.out, "a") as fh:
                fh.write(line + "\n")


if __name__ == "__main__":
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    main()
