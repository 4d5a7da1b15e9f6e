"""Run logging: metrics.jsonl always, TensorBoard and Weights & Biases optionally, a rich progress bar on a terminal.

Every sink takes the same flat dict of namespaced floats (`reward/mean`, `timing/generate`,
`controller/prompt_gdro/weight/bin_3`), so adding a metric anywhere needs no change here.
"""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Mapping


class MetricsLogger:
    """Fan-out of per-step metrics to the configured sinks; `close()` flushes everything."""

    def __init__(self, run_dir: Path, *, tensorboard: bool = True, wandb: str = "off", progress: bool = True,
                 total_steps: int = 0, run_name: str = "run", config: Mapping[str, Any] | None = None,
                 start_step: int = 0, enabled: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.enabled = enabled  # False on non-zero ranks: they log nothing
        self._t0 = time.time()
        self._jsonl = None
        self._tb = None
        self._wandb = None
        self._progress = None
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._jsonl = open(self.run_dir / "metrics.jsonl", "a", buffering=1)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.run_dir / "tb"))
        if wandb != "off":
            self._wandb = _start_wandb(wandb, run_name, self.run_dir, config)
        if progress and sys.stderr.isatty():
            self._progress = _Progress(total_steps, start_step)

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        if not self.enabled:
            return
        clean = {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))}
        record = {"step": step, "wall": round(time.time() - self._t0, 3), **clean}
        self._jsonl.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for key, value in clean.items():
                self._tb.add_scalar(key, value, step)
        if self._wandb is not None:
            self._wandb.log(clean, step=step)
        if self._progress is not None:
            self._progress.update(step, clean)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.close()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()
        if self._jsonl is not None:
            self._jsonl.close()


def _start_wandb(mode: str, name: str, run_dir: Path, config: Mapping[str, Any] | None):
    try:
        import wandb
    except ImportError:
        raise RuntimeError("logging.wandb is set but the `wandb` package is not installed: pip install wandb") from None
    return wandb.init(project="rlbal", name=name, dir=str(run_dir), mode=mode, config=dict(config or {}))


class _Progress:
    """A rich progress bar with step time, reward and ETA."""

    def __init__(self, total: int, start: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self._bar = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                             TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[info]}"), transient=False)
        self._task = self._bar.add_task("train", total=total, completed=start, info="")
        self._bar.start()

    def update(self, step: int, m: Mapping[str, float]) -> None:
        info = f"reward {m.get('reward/mean', float('nan')):.3f}  step {m.get('timing/step', float('nan')):.1f}s"
        self._bar.update(self._task, completed=step, info=info)

    def close(self) -> None:
        self._bar.stop()


def read_metrics(run_dir: Path) -> list[dict[str, float]]:
    """All complete lines of RUN/metrics.jsonl (a truncated last line from a killed run is skipped)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def truncate_metrics(run_dir: Path, after_step: int) -> None:
    """On resume: drop lines logged after the checkpoint's step, so the file reads as one uninterrupted run."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return
    keep = [json.dumps(r) for r in read_metrics(run_dir) if r.get("step", 0) <= after_step]
    path.write_text("".join(line + "\n" for line in keep))
