"""Run logging: metrics.jsonl and completions.jsonl always, TensorBoard and Weights & Biases optionally, the console.

Every sink takes the same flat dict of namespaced floats (`reward/mean`, `timing/generate`,
`controller/prompt_gdro/weight/bin_3`), so adding a metric anywhere needs no change here.

RUN/completions.jsonl has one line per training step:

    {"step": 3, "prompt_id": [...], "bin": [...], "n": [...],          every trained prompt: dataset index,
                                                                        difficulty bin at decide time, rollouts
     "samples": [{"prompt_id", "bin", "n", "prompt", "completion",     `logging.completions_per_step` prompts,
                  "reward", "outcome", "group_correct"}, ...]}          evenly spaced over the batch, and the
                                                                        first completion of each
The prompt ids and bins are what the bin-to-bin migration plot reads (rlbal.plot). The samples also go to
TensorBoard (text `completions`) and W&B (table `completions`); the resolved config goes to TensorBoard
(text `config`, step 0) and W&B (the run config).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rlbal.console import Console


class MetricsLogger:
    """Fan-out of per-step metrics to the configured sinks; `close()` flushes everything."""

    def __init__(
        self,
        run_dir: Path,
        *,
        tensorboard: bool = True,
        wandb: Mapping[str, Any] | None = None,
        console: Console | None = None,
        config: Mapping[str, Any] | None = None,
        completions_per_step: int = 4,
        enabled: bool = True,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.enabled = enabled  # False on non-zero ranks: they log nothing
        self.console = console if console is not None else Console(0, enabled=False)
        self.completions_per_step = completions_per_step
        self._t0 = time.time()
        self._jsonl = self._completions = self._tb = self._wandb = None
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._jsonl = open(self.run_dir / "metrics.jsonl", "a", buffering=1)
        self._completions = open(self.run_dir / "completions.jsonl", "a", buffering=1)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.run_dir / "tb"))
            if config is not None:
                self._tb.add_text("config", config_markdown(config), 0)
        if wandb is not None:
            self._wandb = _start_wandb(self.run_dir, config, **wandb)

    @classmethod
    def from_config(cls, cfg: Any, run_dir: Path, *, start_step: int = 0, enabled: bool = True) -> MetricsLogger:
        """The sinks and console a run's `logging` section asks for."""
        lc = cfg.logging
        console = Console(
            cfg.run.max_steps, start_step=start_step, every=lc.console_every, bar=lc.progress, enabled=enabled
        )
        return cls(
            run_dir,
            tensorboard=lc.tensorboard,
            wandb=wandb_settings(cfg),
            console=console,
            config=cfg.to_dict(),
            completions_per_step=lc.completions_per_step,
            enabled=enabled,
        )

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
        self.console.step(step, clean)

    def log_completions(self, step: int, rounds: Sequence[Any]) -> None:
        """One completions.jsonl line for a step's rounds (rlbal.step.Round), samples to TB and W&B."""
        if not self.enabled:
            return
        record = {"step": step, **step_completions(rounds, self.completions_per_step)}
        self._completions.write(json.dumps(record) + "\n")
        samples = record["samples"]
        if samples and self._tb is not None:
            self._tb.add_text("completions", samples_markdown(samples), step)
        if samples and self._wandb is not None:
            import wandb

            table = wandb.Table(columns=list(samples[0]), data=[list(s.values()) for s in samples])
            self._wandb.log({"completions": table}, step=step)

    def close(self) -> None:
        self.console.close()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()
        for f in (self._jsonl, self._completions):
            if f is not None:
                f.close()


def wandb_settings(cfg: Any) -> dict[str, Any] | None:
    """`wandb.init` arguments from the `logging` section (None when W&B is off).

    >>> from rlbal.config import load_config
    >>> wandb_settings(load_config(None, ["logging.wandb=offline", "logging.wandb_tags=[a]", "run.name=r"]))
    {'mode': 'offline', 'project': 'rlbal', 'entity': None, 'name': 'r', 'tags': ['a']}
    """
    lc = cfg.logging
    if lc.wandb == "off":
        return None
    return dict(
        mode=lc.wandb,
        project=lc.wandb_project,
        entity=lc.wandb_entity,
        name=lc.wandb_name or cfg.run.name,
        tags=list(lc.wandb_tags),
    )


def _start_wandb(
    run_dir: Path,
    config: Mapping[str, Any] | None,
    *,
    mode: str,
    project: str,
    entity: str | None,
    name: str,
    tags: list[str],
):
    try:
        import wandb
    except ImportError:
        raise RuntimeError(
            "logging.wandb is set but the `wandb` package is not installed: pip install 'rlbal[wandb]'"
        ) from None
    return wandb.init(
        project=project, entity=entity, name=name, tags=tags, dir=str(run_dir), mode=mode, config=dict(config or {})
    )


def step_completions(rounds: Sequence[Any], k: int) -> dict[str, Any]:
    """Every trained prompt's id, bin and rollout count, and k sampled completions (see the module docstring).

    Samples are the prompts at positions round(linspace(0, P-1, min(k, P))) of the step's P prompts (all rounds
    in order), each with its first completion; `group_correct` counts the correct completions of its group.
    """
    ids, bins, counts, picks = [], [], [], []
    for r in rounds:
        ids += [int(i) for i in r.prompts.indices]
        bins += [int(b) for b in r.alloc.bins]
        counts += [int(c) for c in r.alloc.counts]
    total = len(ids)
    m = min(k, total)
    wanted = {round(j * (total - 1) / max(m - 1, 1)) for j in range(m)}
    position = 0
    samples = []
    for r in rounds:
        for p in range(len(r.prompts)):
            if position in wanted:
                picks.append((r, p))
            position += 1
    for r, p in picks:
        rows = [i for i, c in enumerate(r.gen.completions) if c.prompt_index == p]
        if not rows:
            continue
        row = rows[0]
        samples.append(
            {
                "prompt_id": int(r.prompts.indices[p]),
                "bin": int(r.alloc.bins[p]),
                "n": int(r.alloc.counts[p]),
                "prompt": r.prompts.texts[p],
                "completion": r.gen.completions[row].text,
                "reward": float(r.scores.scores[row]),
                "outcome": str(r.scores.outcomes[row]),
                "group_correct": int(sum(bool(r.scores.correct[i]) for i in rows)),
            }
        )
    return {"prompt_id": ids, "bin": bins, "n": counts, "samples": samples}


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", "⏎")


def samples_markdown(samples: Sequence[Mapping[str, Any]]) -> str:
    """A markdown table of sampled completions (TensorBoard renders text as markdown).

    >>> print(samples_markdown([{"prompt": "1+1=?", "completion": "a|b\\nc", "reward": 1.0}]))
    | prompt | completion | reward |
    |---|---|---|
    | 1+1=? | a\\|b⏎c | 1.0 |
    """
    cols = list(samples[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_cell(s.get(c, "")) for c in cols) + " |" for s in samples]
    return "\n".join(lines)


def config_markdown(config: Mapping[str, Any]) -> str:
    """The resolved config as a YAML code block (indented four spaces: markdown code)."""
    import yaml

    return "\n".join("    " + line for line in yaml.safe_dump(dict(config), sort_keys=False).splitlines())


def read_metrics(run_dir: Path, name: str = "metrics.jsonl") -> list[dict[str, Any]]:
    """All complete lines of RUN/metrics.jsonl (or another JSONL log of the run); a truncated last line from
    a killed run is skipped."""
    path = Path(run_dir) / name
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):  # a line that is not a JSON object is not a metrics row
            rows.append(row)
    return rows


def truncate_metrics(run_dir: Path, after_step: int) -> None:
    """On resume: drop lines logged after the checkpoint's step (metrics and completions), so each file reads as
    one uninterrupted run."""
    for name in ("metrics.jsonl", "completions.jsonl"):
        path = Path(run_dir) / name
        if path.exists():
            keep = [json.dumps(r) for r in read_metrics(run_dir, name) if r.get("step", 0) <= after_step]
            path.write_text("".join(line + "\n" for line in keep))
