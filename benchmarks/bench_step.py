"""Where a training step's time goes, for any recipe: generate / score / update / the rest, and the floor.

    .venv/bin/python benchmarks/bench_step.py recipes/quickstart.yaml                 # ~10 min on 2 cores
    .venv/bin/python benchmarks/bench_step.py recipes/quickstart.yaml --steps 10 --rounds 1 --variants current

Run it without OMP_NUM_THREADS in the environment: a run would take that as the user's thread count.

Every (variant, round) runs in a fresh child process: the recipe's own components (controllers included)
through rlbal's driver loop for `--warmup` + `--steps` steps, without evaluation or checkpoints, with the
environment and threads a run sets itself (rlbal.runtime_env); rounds are interleaved across variants, so a
burst of load on a shared machine hits each alike. Per stage the median over the timed steps of all rounds
is reported, with the spread of the per-round medians (min-max). Variants:

  current        the code as it is
  old-scoring    every completion through a reward worker and math-verify, as before the fast path
                 (RewardExecutor(prefilter=False), math's fast_path off; same verdicts)
  before         old-scoring, and torch's default threads with spinning OpenMP threads (no rlbal.runtime_env
                 thread or OMP_WAIT_POLICY setting): the step as it was before issue 16, KV-cache size aside

The floor is measured in every child after its steps, with the same engine, policy and batch size: one bare
`generate` of prompts_per_step x n completions of the recipe's prompts, plus one forward/backward of the policy
over them (the learner's micro-batches, no optimizer step). The report gives step / floor.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("generate", "score", "update", "weight_sync", "other", "step")
VARIANTS = ("current", "old-scoring", "before")


def time_floor(parts: Any, prompts: list[list[int]], n: int, sampling: Any, reps: int) -> tuple[float, float]:
    """Median seconds over `reps` of one bare generate of n completions per prompt (`sampling(rep)` gives the
    SamplingSpec) and of one forward/backward of the policy over them (the learner's micro-batches and forward:
    logits at the completion positions only, a group's prompt once when the learner shares it; no optimizer
    step). Also used by bench_trl.py."""
    import torch

    from rlbal.batch import RolloutBatch

    model, device = parts.learner.model, parts.learner.device
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    gen_s, fb_s = [], []
    for rep in range(reps):
        sync()
        t0 = time.perf_counter()
        gen = parts.engine.generate(prompts, [n] * len(prompts), sampling(rep))
        sync()
        t1 = time.perf_counter()
        batch = RolloutBatch.from_generation(
            gen.prompt_token_ids,
            gen.completions,
            list(range(len(prompts))),
            [0] * len(prompts),
            [1.0] * len(prompts),
            [0.0] * len(gen.completions),
            parts.pad_id,
        ).to(device)
        sync()
        t2 = time.perf_counter()
        for idx in parts.learner.micro_batches(batch):
            mb = batch.select(idx)
            logp_BL = parts.learner.forward(model, mb)
            (logp_BL * mb.completion_mask_BL).sum().backward()
        sync()
        gen_s.append(t1 - t0)
        fb_s.append(time.perf_counter() - t2)
        model.zero_grad(set_to_none=True)
    return statistics.median(gen_s), statistics.median(fb_s)


def floor(parts: Any, cfg: Any, reps: int = 3) -> dict[str, float]:
    """Median seconds of a bare generate of one step's completions and of one forward/backward over them."""
    from rlbal.step import sampling_for

    prompts = parts.source.next(cfg.train.prompts_per_step).prompt_token_ids
    gen, fwd_bwd = time_floor(
        parts,
        prompts,
        cfg.rollout.n,
        lambda rep: sampling_for(cfg, 10_000 + rep, 0),
        reps,
    )
    return {"generate": gen, "fwd_bwd": fwd_bwd, "total": gen + fwd_bwd}


def child(spec: dict[str, Any]) -> None:
    import os

    from rlbal.runtime_env import apply_env

    set_here = apply_env()
    if spec["variant"] == "before" and "OMP_WAIT_POLICY" in set_here:
        del os.environ["OMP_WAIT_POLICY"]  # before torch loads: libgomp's default (spin, then sleep), as before
    from rlbal.assemble import build_parts
    from rlbal.config import load_config
    from rlbal.driver import LoopState, train_loop
    from rlbal.runtime_env import configure_threads

    with tempfile.TemporaryDirectory(prefix="bench_step_") as out:
        overrides = [
            *spec["overrides"],
            f"run.max_steps={spec['warmup'] + spec['steps']}",
            "checkpoint.every=0",
            "logging.progress=false",
            "logging.plots=false",
            "logging.tensorboard=false",
            "run.resume=never",
            f"run.output_dir={out}",
            "run.name=bench",
        ]
        cfg = load_config(spec["recipe"], overrides)
        if spec["variant"] != "before":
            configure_threads(cfg)
        parts = build_parts(cfg, Path(out) / "bench")
        parts.evaluator = None  # timed steps only
        if spec["variant"] in ("old-scoring", "before"):
            from reward.executor import RewardExecutor

            parts.rewards.close()
            specs = tuple(
                dataclasses.replace(s, kwargs={**s.kwargs, "fast_path": False}) if s.fn == "math" else s
                for s in parts.rewards.specs
            )
            parts.rewards = RewardExecutor(
                specs,
                num_workers=cfg.reward.workers,
                timeout_s=cfg.reward.timeout_s,
                threshold=cfg.reward.correct_threshold,
                prefilter=False,
                chunk_size=8,
            )
        parts.open_logger(start_step=0)
        try:
            train_loop(cfg, parts, LoopState(), save=lambda state: None, evaluate=lambda step: {})
            fl = floor(parts, cfg)
        finally:
            parts.close()
        rows = [json.loads(x) for x in (Path(out) / "bench" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "timing/step" in r][spec["warmup"] :]
    timed = []
    for r in steps:
        t = {k: r.get(f"timing/{k}", 0.0) for k in STAGES}
        t["other"] = t["step"] - t["generate"] - t["score"] - t["update"] - t["weight_sync"]
        timed.append(t)
    print(
        "RESULT "
        + json.dumps(
            {"steps": timed, "floor": fl, "fast_frac": statistics.mean(r.get("reward/fast_frac", 0.0) for r in steps)}
        ),
        flush=True,
    )


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True, cwd=ROOT
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise SystemExit(f"{spec['variant']} failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1].removeprefix("RESULT "))


def report(results: dict[str, list[dict[str, Any]]]) -> None:
    head = f"{'':<12}" + "".join(f"{k:>20}" for k in STAGES) + f"{'score %':>9}{'floor':>20}{'step/floor':>11}"
    print(head + "\n" + "-" * len(head))
    for variant, rounds in results.items():
        cells = []
        for k in STAGES:
            pooled = statistics.median(s[k] for r in rounds for s in r["steps"])
            per_round = [statistics.median(s[k] for s in r["steps"]) for r in rounds]
            cells.append(f"{pooled:>8.3f} ({min(per_round):.2f}-{max(per_round):.2f})")
        step = statistics.median(s["step"] for r in rounds for s in r["steps"])
        score = statistics.median(s["score"] for r in rounds for s in r["steps"])
        fl = statistics.median(r["floor"]["total"] for r in rounds)
        gen_fl = statistics.median(r["floor"]["generate"] for r in rounds)
        print(
            f"{variant:<12}" + "".join(f"{c:>20}" for c in cells) + f"{100 * score / step:>8.1f}%"
            f"{f'{gen_fl:.2f}+{fl - gen_fl:.2f}={fl:.2f}':>20}{step / fl:>10.2f}x"
            f"   fast path decided {statistics.mean(r['fast_frac'] for r in rounds):.0%}"
        )
    print(
        "cells: median over the timed steps of all rounds (min-max of the per-round medians), seconds; "
        "floor: bare generate + one fwd/bwd"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("recipe", nargs="?", default=str(ROOT / "recipes" / "quickstart.yaml"))
    ap.add_argument("overrides", nargs="*", help="key.sub=value, as for rlbal train")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per round")
    ap.add_argument("--warmup", type=int, default=2, help="untimed first steps")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved repetitions of every variant")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument("--out", default=None, help="write every round's steps as JSON here")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(json.loads(args.child))
        return
    import os

    results: dict[str, list[dict[str, Any]]] = {v: [] for v in args.variants}
    load = [os.getloadavg()[0]]
    for round_ in range(args.rounds):
        for variant in args.variants:
            print(f"round {round_ + 1}/{args.rounds}: {variant} ...", flush=True)
            results[variant].append(
                run_child(
                    dict(
                        recipe=args.recipe,
                        overrides=args.overrides,
                        variant=variant,
                        steps=args.steps,
                        warmup=args.warmup,
                    )
                )
            )
            load.append(os.getloadavg()[0])
    print(
        f"\n== {Path(args.recipe).name} {' '.join(args.overrides)}: {args.rounds} round(s) x {args.warmup} warm-up + "
        f"{args.steps} timed steps; load average {min(load):.1f}-{max(load):.1f} =="
    )
    report(results)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
