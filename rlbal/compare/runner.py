"""Which runs a comparison makes and how they share the machine.

One recipe, several methods, several seeds. A method is the recipe with its controller sections switched on
or off (the built-ins) plus optional overrides (variants), so the only difference between the runs of one
seed is the controllers: same model, data order (the prompt stream is a function of run.seed), steps,
prompts per step and rollout budget (Rollout-GDRO spends exactly rollout.n per prompt on average).

    grpo          controllers.prompt_gdro and controllers.rollout off
    prompt_gdro   Prompt-GDRO on (the recipe's section, or the defaults), Rollout-GDRO off
    rollout_gdro  Rollout-GDRO on, Prompt-GDRO off
    gdro          both on

Runs go to OUT/runs/<method>_s<seed>; each is trained with `python -m rlbal.train` and then scored on the
held-out set (`rlbal.compare.heldout`), one job per slot of cores: a slot is a fixed set of CPUs the job is
pinned to (sched_setaffinity) with its thread counts set to the slot's size, because two unpinned runs on a
2-core machine slowed each other about 15x. A run already scored (its heldout.json exists) is not redone,
so an interrupted comparison continues where it stopped.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BUILTIN: dict[str, tuple[bool, bool]] = {  # name -> (Prompt-GDRO on, Rollout-GDRO on)
    "grpo": (False, False),
    "prompt_gdro": (True, False),
    "rollout_gdro": (False, True),
    "gdro": (True, True),
}


@dataclass(frozen=True)
class Method:
    """A named configuration: a built-in controller switch plus extra overrides."""

    name: str
    base: str
    overrides: tuple[str, ...] = ()

    def run_overrides(self, recipe_controllers: dict[str, Any]) -> list[str]:
        """Overrides that turn the recipe into this method (the recipe's own controller sections are kept)."""
        pg, ro = BUILTIN[self.base]
        out = []
        for key, on in (("prompt_gdro", pg), ("rollout", ro)):
            if not on:
                out.append(f"controllers.{key}=null")
            elif recipe_controllers.get(key) is None:
                out.append(f"controllers.{key}={{}}")
        return out + list(self.overrides)


def parse_methods(names: str, variants: Sequence[str]) -> list[Method]:
    """`--methods a,b` (built-ins) and `--variant "NAME BASE key=value ..."` (a built-in plus overrides)."""
    from rlbal.errors import UserError

    methods = []
    for name in [n.strip() for n in names.split(",") if n.strip()]:
        if name not in BUILTIN:
            raise UserError(
                f"--methods: unknown method {name!r}; built-ins: {', '.join(BUILTIN)} "
                '(add your own with --variant "NAME BASE key=value ...")'
            )
        methods.append(Method(name, name))
    for text in variants:
        parts = shlex.split(text)
        if len(parts) < 2 or parts[1] not in BUILTIN or any("=" not in p for p in parts[2:]):
            raise UserError(
                f'--variant {text!r}: expected "NAME BASE key=value ..." with BASE one of {", ".join(BUILTIN)}'
            )
        methods.append(Method(parts[0], parts[1], tuple(parts[2:])))
    names_seen = [m.name for m in methods]
    if len(set(names_seen)) != len(names_seen) or not methods:
        raise UserError(f"--methods/--variant: method names must be unique and at least one given, got {names_seen}")
    return methods


def parse_seeds(text: str) -> list[int]:
    from rlbal.errors import UserError

    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UserError(f"--seeds {text!r}: expected comma-separated non-negative integers, e.g. 1,2,3") from None
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds {text!r}: expected distinct non-negative integers, e.g. 1,2,3")
    return seeds


@dataclass
class Job:
    """One command in a run's sequence (train, then score), with its log file."""

    name: str
    commands: list[list[str]]
    log: Path
    done: Path  # exists once the job has nothing left to do
    proc: subprocess.Popen | None = None
    step: int = 0
    started: float = 0.0
    seconds: float = 0.0
    failed: str | None = None


@dataclass
class Plan:
    """Every run of the comparison and the files it leaves."""

    recipe: Path
    out: Path
    methods: list[Method]
    seeds: list[int]
    overrides: list[str]
    eval_size: int
    eval_k: int
    recipe_controllers: dict[str, Any] = field(default_factory=dict)  # the recipe's prompt_gdro / rollout sections
    jobs: list[Job] = field(default_factory=list)

    def run_dir(self, method: str, seed: int) -> Path:
        return self.out / "runs" / f"{method}_s{seed}"

    def heldout(self, method: str, seed: int) -> Path:
        return self.run_dir(method, seed) / "heldout.json"

    def base_heldout(self, seed: int) -> Path:
        return self.out / "runs" / f"base_s{seed}.json"

    def train_overrides(self, method: Method, seed: int) -> list[str]:
        return [
            *method.run_overrides(self.recipe_controllers),
            *self.overrides,
            f"run.seed={seed}",
            f"run.name={method.name}_s{seed}",
            f"run.output_dir={self.out / 'runs'}",
            "logging.plots=false",
            "logging.progress=false",
        ]

    def build(self) -> None:
        """The jobs: per (method, seed) train + score; per seed the starting model's score (on the first method's
        run directory, once it exists)."""
        py = sys.executable
        for seed in self.seeds:
            for m in self.methods:
                run = self.run_dir(m.name, seed)
                train = [py, "-m", "rlbal.train", str(self.recipe), *self.train_overrides(m, seed)]
                score = [
                    py,
                    "-m",
                    "rlbal.compare.heldout",
                    str(run),
                    str(self.heldout(m.name, seed)),
                    "--size",
                    str(self.eval_size),
                    "--k",
                    str(self.eval_k),
                ]
                cmds = [train, score]
                if m is self.methods[0]:  # the starting model, scored on this seed's held-out prompts
                    cmds.append(
                        [
                            py,
                            "-m",
                            "rlbal.compare.heldout",
                            str(run),
                            str(self.base_heldout(seed)),
                            "--size",
                            str(self.eval_size),
                            "--k",
                            str(self.eval_k),
                            "--base",
                        ]
                    )
                done = self.base_heldout(seed) if m is self.methods[0] else self.heldout(m.name, seed)
                self.jobs.append(Job(f"{m.name}_s{seed}", cmds, self.out / "logs" / f"{m.name}_s{seed}.log", done))


def slots(parallel: int, cores_per_run: int) -> list[list[int]]:
    """`parallel` disjoint CPU sets of `cores_per_run` from this process's affinity mask."""
    from rlbal.errors import UserError

    cpus = sorted(os.sched_getaffinity(0))
    if parallel < 1 or cores_per_run < 1 or parallel * cores_per_run > len(cpus):
        raise UserError(
            f"--parallel {parallel} x --cores-per-run {cores_per_run} needs that many CPUs; this process "
            f"may use {len(cpus)} ({cpus})"
        )
    return [cpus[i * cores_per_run : (i + 1) * cores_per_run] for i in range(parallel)]


def _start(job: Job, cpus: list[int]) -> None:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(len(cpus)),
        "MKL_NUM_THREADS": str(len(cpus)),
        "RLBAL_PINNED_CPUS": ",".join(map(str, cpus)),
    }
    job.log.parent.mkdir(parents=True, exist_ok=True)
    fh = open(job.log, "a")
    fh.write(f"\n$ {shlex.join(job.commands[job.step])}   # cpus {cpus}\n")
    fh.flush()
    job.proc = subprocess.Popen(
        job.commands[job.step],
        stdout=fh,
        stderr=subprocess.STDOUT,
        env=env,
        preexec_fn=lambda: os.sched_setaffinity(0, cpus),
    )
    fh.close()
    job.started = time.perf_counter()


def execute(plan: Plan, parallel: int, cores_per_run: int, say=print) -> list[Job]:
    """Run every job not done yet, at most `parallel` at a time, each pinned to its slot; returns the jobs.
    A failed command stops its job (named with its log in the report); the others go on."""
    free = slots(parallel, cores_per_run)
    todo = [j for j in plan.jobs if not j.done.is_file()]
    for j in plan.jobs:
        if j.done.is_file():
            say(f"[compare] {j.name}: already scored ({j.done}), kept")
    running: dict[int, tuple[Job, list[int]]] = {}
    while todo or running:
        while todo and free:
            job, cpus = todo.pop(0), free.pop(0)
            say(f"[compare] {job.name}: started on cpus {cpus} (log {job.log})")
            _start(job, cpus)
            running[id(job)] = (job, cpus)
        time.sleep(0.5)
        for key, (job, cpus) in list(running.items()):
            rc = job.proc.poll()
            if rc is None:
                continue
            job.seconds += time.perf_counter() - job.started
            if rc != 0:
                job.failed = f"exit {rc} in `{job.commands[job.step][2]}` (see {job.log})"
                say(f"[compare] {job.name}: FAILED, {job.failed}")
            elif job.step + 1 < len(job.commands):
                job.step += 1
                _start(job, cpus)
                continue
            else:
                say(f"[compare] {job.name}: done in {job.seconds / 60:.1f} min")
            del running[key]
            free.append(cpus)
    return plan.jobs
