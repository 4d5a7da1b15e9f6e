"""What a person sees while a run trains: quiet third-party logs, progress, milestones (the end summary:
`rlbal.run.end_summary`).

    [rlbal] run quickstart: 150 steps x 64 prompts, vllm engine, torch learner -> runs/quickstart
    [rlbal] ready in 41.3 s: vllm engine up, 800 prompts, model tiny-sft-400
    [rlbal] eval step 0: mean@4 0.201 (level_1 0.375, level_2 0.028)  greedy pass@1 0.250  pass@4 0.390
    [rlbal] step  10/150  reward 0.121  correct 0.13  rollouts 8.0/prompt  prompts/bin 64 0 0 0 0  n/bin 8 - - - -
            1.9 s/step  ETA 4m26s
    [rlbal] checkpoint step 50 written to runs/quickstart/checkpoints/step_50

(A step line is one line, wrapped above.) On a terminal the step lines are a progress bar (ETA, live reward) and
milestones print above it; without one (a pipe, a file, CI) a step line is printed every `logging.console_every`
steps (0: about 15 per run), always for the first and the last step. Only the main process prints.

Third-party output is quiet unless `logging.verbose` (`rlbal train --verbose`): `quiet_third_party` runs
before torch, transformers or vLLM are imported and sets vLLM's logging to WARNING through a logging config
file (so engine subprocesses and local Ray workers inherit it), drops the known-harmless warnings listed in
HARMLESS (each with the reason it is harmless), turns Hugging Face progress bars and torch's C++ info
warnings off, and ignores FutureWarnings raised inside vLLM.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

PREFIX = "[rlbal]"
# Warnings that are expected on every run and say nothing actionable; hidden unless verbose.
HARMLESS: tuple[tuple[str, str], ...] = (
    (
        r"RotaryEmbedding: Failed to load weights",
        "vLLM's in-place weight reload (every step) reports rotary embeddings, which have no weights",
    ),
    (r"^Reloading (weights inplace|and processing weights took)", "the per-step weight reload (INFO)"),
    (r"^Successfully reset prefix cache", "after each weight sync (INFO)"),
    (r"Setting accelerator to CPU", "DeepSpeed imported on a machine without GPU"),
    (r"^Triton is (installed, but doesn't include CPU backend|not installed)", "vLLM-CPU runs without Triton"),
    (r"(libtcmalloc|libiomp) is not found in LD_PRELOAD", "a vLLM-CPU speed hint"),
    (r"CPU backend doesn't allow to use `torch.set_num_threads`", "vLLM-CPU pins its threads itself"),
    (
        r"OMP_NUM_THREADS=\d+ is set; leaving Torch threads",
        "rlbal sets the thread budget itself (the `runtime:` line says how many)",
    ),
    (
        r"does not officially support disabling chunked prefill",
        "rlbal turns it off on CPU on purpose (seeded requests need whole-prompt prefill)",
    ),
    (r"^Enforce eager set|^Inductor compilation was disabled", "rollout.enforce_eager (the default on CPU)"),
    (r"^The global random seed is set to", "rlbal seeds every RNG itself"),
    (
        r"Unknown vLLM environment variable detected: VLLM_DIST_IDENT$",
        "vLLM's own per-process variable, inherited from a parent process that ran vLLM (rlbal compare, tests)",
    ),
    (r"^Reset SSM cache type|^Model Runner V2 requires Triton", "vLLM-CPU platform notes"),
)
_HARMLESS_RE = re.compile("|".join(f"(?:{pattern})" for pattern, _ in HARMLESS))


class ThirdPartyNoise(logging.Filter):
    """Drops records whose message matches HARMLESS (used on vLLM's handler, DeepSpeed's logger and Python's
    last-resort handler)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not _HARMLESS_RE.search(record.getMessage())


def vllm_logging_config() -> dict[str, Any]:
    """vLLM's logger at WARNING on stdout, with the ThirdPartyNoise filter (a `logging.config.dictConfig`)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "vllm": {
                "format": "vLLM %(levelname)s %(asctime)s [%(filename)s:%(lineno)d] %(message)s",
                "datefmt": "%m-%d %H:%M:%S",
            }
        },
        "filters": {"harmless": {"()": "rlbal.console.ThirdPartyNoise"}},
        "handlers": {
            "vllm": {
                "class": "logging.StreamHandler",
                "formatter": "vllm",
                "level": "WARNING",
                "stream": "ext://sys.stdout",
                "filters": ["harmless"],
            }
        },
        "loggers": {"vllm": {"handlers": ["vllm"], "level": "WARNING", "propagate": False}},
    }


def quiet_third_party(verbose: bool) -> None:
    """Quiet vLLM, DeepSpeed, Hugging Face and torch unless `verbose` (call before they are imported; an
    environment variable the user already set wins)."""
    if verbose:
        return
    text = json.dumps(vllm_logging_config(), sort_keys=True)
    path = Path(tempfile.gettempdir()) / f"rlbal-vllm-logging-{hashlib.sha256(text.encode()).hexdigest()[:12]}.json"
    if not path.exists():
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    for key, value in (
        ("VLLM_LOGGING_CONFIG_PATH", str(path)),
        ("VLLM_LOGGING_LEVEL", "WARNING"),
        ("HF_HUB_DISABLE_PROGRESS_BARS", "1"),
        ("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1"),
        ("TORCH_CPP_LOG_LEVEL", "ERROR"),
    ):
        os.environ.setdefault(key, value)
    noise = ThirdPartyNoise()
    logging.getLogger("DeepSpeed").addFilter(noise)  # its records are logged on this logger itself
    if logging.lastResort is not None:  # records of loggers with no handler yet (vLLM before it configures)
        logging.lastResort.addFilter(noise)
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"vllm(\.|$)")


def verbose_requested(recipe: str | None, overrides: Sequence[str]) -> bool:
    """`logging.verbose` as the recipe and overrides write it, read before validation (which imports torch,
    whose C++ log level is fixed at import). A recipe that does not load is reported by `load_config`."""
    from rlbal.config import ConfigError, _apply_override, _read_yaml

    try:
        raw = _read_yaml(Path(recipe)) if recipe is not None else {}
        for item in overrides:
            _apply_override(raw, item)
    except ConfigError:
        return False
    section = raw.get("logging")
    return isinstance(section, dict) and section.get("verbose") is True


# ----------------------------------------------------------------------------- progress


def duration(seconds: float) -> str:
    """'42s', '4m26s', '1h05m'.

    >>> duration(42.4), duration(266), duration(3900)
    ('42s', '4m26s', '1h05m')
    """
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def bin_values(metrics: Mapping[str, float], family: str) -> dict[int, float]:
    """bin -> value of the keys `<family>/bin_<b>`."""
    head = f"{family}/bin_"
    return {int(k[len(head) :]): v for k, v in metrics.items() if k.startswith(head) and k[len(head) :].isdigit()}


def per_bin(values: Mapping[int, float], fmt: str, counts: Mapping[int, float] | None = None) -> str:
    """Values in bin order over every bin of `values` and `counts`; '-' where a bin has no value or a count of 0.

    >>> per_bin({0: 3.0, 1: 0.0}, "{:.0f}"), per_bin({0: 6.0, 1: 2.0}, "{:.0f}", counts={0: 3.0, 1: 0.0, 2: 0.0})
    ('3 0', '6 - -')
    """
    bins = range(max([*values, *(counts or {})], default=-1) + 1)
    return " ".join(
        "-" if b not in values or (counts is not None and not counts.get(b, 1.0)) else fmt.format(values[b])
        for b in bins
    )


def step_line(step: int, total: int, m: Mapping[str, float], sec_per_step: float) -> str:
    """One progress line of the metrics of a training step."""
    parts = [
        f"step {step:>{len(str(total))}}/{total}",
        f"reward {m.get('reward/mean', math.nan):.3f}",
        f"correct {m.get('reward/correct_rate', math.nan):.2f}",
    ]
    if m.get("rollout/num_prompts"):
        parts.append(f"rollouts {m['rollout/num_sequences'] / m['rollout/num_prompts']:.1f}/prompt")
    counts = bin_values(m, "controller/classifier/count")
    if counts:
        parts.append("prompts/bin " + per_bin(counts, "{:.0f}"))
    if n := bin_values(m, "controller/rollout_gdro/n"):
        parts.append("n/bin " + per_bin(n, "{:.1f}", counts=counts or None))
    eta = f"  ETA {duration(sec_per_step * (total - step))}" if step < total else ""
    return "  ".join(parts) + f"  {sec_per_step:.1f} s/step{eta}"


def eval_line(step: int, m: Mapping[str, float]) -> str | None:
    """The held-out accuracy of an eval step on one line (None when the metrics hold no eval)."""
    means = sorted(k for k in m if re.fullmatch(r"eval/mean@\d+", k))
    if not means:
        return None
    k = means[0].split("@")[1]
    levels = sorted(key.split("/")[1] for key in m if re.fullmatch(rf"eval/(level|task)_[^/]+/mean@{k}", key))
    per_group = ", ".join(f"{g} {m[f'eval/{g}/mean@{k}']:.3f}" for g in levels)
    detail = f" ({per_group})" if levels else ""
    extra = "".join(
        f"  {name} {m[key]:.3f}"
        for name, key in (("greedy pass@1", "eval/greedy/pass@1"), (f"pass@{k}", f"eval/pass@{k}"))
        if key in m
    )
    return f"eval step {step}: mean@{k} {m[means[0]]:.3f}{detail}{extra}"


class Console:
    """Progress and milestones of one run (main process only; `enabled=False` prints nothing)."""

    def __init__(
        self,
        total_steps: int,
        *,
        start_step: int = 0,
        every: int = 0,
        bar: bool = True,
        enabled: bool = True,
        stream: TextIO | None = None,
    ) -> None:
        self.total, self.enabled = total_steps, enabled
        self.every = every or max(1, -(-total_steps // 15))
        self.stream = stream or sys.stdout
        self._seconds: list[float] = []  # timing/step of the steps seen by this process
        self._bar = _Bar(total_steps, start_step) if enabled and bar and self.stream.isatty() else None

    def say(self, text: str) -> None:
        """A milestone, printed now (above the bar on a terminal)."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.print(f"{PREFIX} {text}")
        else:
            print(f"{PREFIX} {text}", file=self.stream, flush=True)

    def step(self, step: int, metrics: Mapping[str, float]) -> None:
        """A logged metrics row: the progress line when due, then the eval line."""
        if not self.enabled:
            return
        if "timing/step" in metrics:
            self._seconds.append(float(metrics["timing/step"]))
            sec = sum(self._seconds) / len(self._seconds)
            if self._bar is not None:
                self._bar.update(step, metrics, sec)
            elif step == 1 or step % self.every == 0 or step == self.total or len(self._seconds) == 1:
                self.say(step_line(step, self.total, metrics, sec))
        if (line := eval_line(step, metrics)) is not None:
            self.say(line)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class _Bar:
    """A rich progress bar: steps, elapsed, ETA, live reward and s/step."""

    def __init__(self, total: int, start: int) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._bar = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
        )
        self._task = self._bar.add_task("train", total=total, completed=start, info="")
        self._bar.start()

    def print(self, text: str) -> None:
        self._bar.console.print(text, markup=False, highlight=False)

    def update(self, step: int, m: Mapping[str, float], sec: float) -> None:
        info = f"reward {m.get('reward/mean', math.nan):.3f}  {sec:.1f} s/step"
        self._bar.update(self._task, completed=step, info=info)

    def close(self) -> None:
        self._bar.stop()


def start_line(cfg: Any, run_dir: Path) -> str:
    """The first line of a run: what it trains, where it writes."""
    c = cfg.controllers
    on = [
        name
        for name, section in (
            ("Prompt-GDRO", c.prompt_gdro),
            ("Rollout-GDRO", c.rollout),
            ("filter", c.filter),
            ("BAPO", c.bapo),
        )
        if section is not None
    ]
    return (
        f"run {cfg.run.name}: {cfg.run.max_steps} steps x {cfg.train.prompts_per_step} prompts x "
        f"{cfg.rollout.n} rollouts{' (mean)' if c.rollout is not None else ''}, {cfg.algo.advantage} "
        f"{'+ ' + ' + '.join(on) + ' ' if on else ''}on {cfg.model.path}, {cfg.rollout.engine} engine, "
        f"{cfg.learner.backend} learner -> {run_dir}"
    )


def ready_line(cfg: Any, parts: Any, seconds: float) -> str:
    """Printed once engine, learner and data are up."""
    ds = parts.source.dataset
    return (
        f"ready in {seconds:.1f} s: {cfg.rollout.engine} engine up, {len(ds)} training prompts"
        f"{f' ({ds.n_dropped} dropped as too long)' if ds.n_dropped else ''}"
    )


def say(text: str) -> None:
    """A milestone line outside the training loop (before the logger exists, or after it closed)."""
    print(f"{PREFIX} {text}", flush=True)


def is_launcher_main() -> bool:
    """Rank 0 of `accelerate launch` / torchrun (RANK), or a plain process: who prints before ranks are known."""
    return os.environ.get("RANK", "0") == "0"
