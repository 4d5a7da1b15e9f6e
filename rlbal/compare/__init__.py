"""`rlbal compare`: does adaptive prompt weighting / rollout allocation beat uniform GRPO on this task?

    rlbal compare RECIPE --methods grpo,prompt_gdro,rollout_gdro,gdro --seeds 1,2,3 [key=value ...]
        [--variant "NAME BASE key=value ..."] [--out DIR] [--parallel P] [--cores-per-run C]
        [--eval-size N] [--eval-k K] [--report-only]

One run per method x seed from one recipe, differing only in the controllers (rlbal.compare.runner), each
pinned to its own cores; every final policy scored per prompt on a held-out set disjoint from training
(rlbal.compare.heldout); OUT/report.md with means, 95 % intervals over seeds and prompts and paired
differences to GRPO (rlbal.compare.stats), compute spent, and the paper's diagnostics (rlbal.compare.report).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    from rlbal.errors import ArgumentParser

    p = ArgumentParser(
        prog="rlbal compare",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__.split("\n\n")[0],
        epilog="examples:\n"
        "  rlbal compare recipes/quickstart.yaml --methods grpo,gdro --seeds 1,2,3\n"
        "  rlbal compare recipes/curriculum.yaml --methods grpo,rollout_gdro --seeds 1,2 \\\n"
        '      --variant "knapsack rollout_gdro controllers.rollout.allocator=knapsack"\n'
        "  rlbal compare recipes/quickstart.yaml --methods grpo,gdro --seeds 1,2,3 --report-only",
    )
    p.add_argument("recipe", type=Path, help="YAML recipe every run starts from")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides for every run")
    p.add_argument(
        "--methods",
        default="grpo,prompt_gdro,rollout_gdro,gdro",
        help="built-in methods: grpo, prompt_gdro, rollout_gdro, gdro (default: all four)",
    )
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar='"NAME BASE key=value ..."',
        help="an extra method: a built-in BASE plus overrides (repeatable)",
    )
    p.add_argument("--seeds", default="1,2,3", help="comma-separated run seeds (default 1,2,3)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default compare/<recipe name>)")
    p.add_argument(
        "--parallel", type=int, default=None, help="runs at once (default: CPUs available / --cores-per-run)"
    )
    p.add_argument("--cores-per-run", type=int, default=1, help="CPUs pinned to each run (default 1)")
    p.add_argument("--eval-size", type=int, default=250, help="held-out prompts per (task, level) (default 250)")
    p.add_argument("--eval-k", type=int, default=8, help="samples per held-out prompt (default 8)")
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap draws for the intervals (default 2000)")
    p.add_argument("--report-only", action="store_true", help="only (re)write the report from finished runs")
    return p


def compare_main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_intermixed_args(argv)
    from rlbal.compare.report import write_report
    from rlbal.compare.runner import Plan, execute, parse_methods, parse_seeds
    from rlbal.config import load_config
    from rlbal.errors import UserError

    methods = parse_methods(args.methods, args.variant)
    seeds = parse_seeds(args.seeds)
    if args.eval_size < 1 or args.eval_k < 1 or args.bootstrap < 100:
        raise UserError("--eval-size and --eval-k must be >= 1 and --bootstrap >= 100")
    for m in methods:  # every run's config is validated before anything starts
        for s in seeds[:1]:
            load_config(args.recipe, [*m.run_overrides({}), *args.overrides, f"run.seed={s}"])
    raw = load_config(args.recipe, list(args.overrides))
    out = args.out or Path("compare") / args.recipe.stem
    plan = Plan(
        args.recipe,
        out,
        methods,
        seeds,
        list(args.overrides),
        args.eval_size,
        args.eval_k,
        {"prompt_gdro": raw.controllers.prompt_gdro, "rollout": raw.controllers.rollout},
    )
    plan.build()
    cpus = len(os.sched_getaffinity(0))
    parallel = args.parallel or max(1, cpus // args.cores_per_run)
    t0 = time.perf_counter()
    jobs = plan.jobs
    if not args.report_only:
        print(
            f"[compare] {len(methods)} methods x {len(seeds)} seeds = {len(methods) * len(seeds)} runs, "
            f"{parallel} at a time on {args.cores_per_run} CPU(s) each -> {out}",
            flush=True,
        )
        jobs = execute(plan, parallel, args.cores_per_run, say=lambda m: print(m, flush=True))
    machine = (
        f"{cpus} CPUs available, {parallel} runs at a time x {args.cores_per_run} CPU(s), load average "
        f"{os.getloadavg()[0]:.1f} at the end"
    )
    path = write_report(plan, jobs, args.bootstrap, machine, time.perf_counter() - t0)
    print(f"[compare] report: {path}", flush=True)
    failed = [j for j in jobs if j.failed]
    return 1 if failed else 0
