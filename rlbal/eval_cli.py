"""`rlbal eval`: the held-out pass@k / mean@k of a run's model, built exactly as the trainer builds it.

    rlbal eval runs/quickstart                    # newest complete checkpoint, the run's eval section
    rlbal eval runs/quickstart --base --k 8       # the untrained starting model, for the baseline row
    rlbal eval runs/quickstart eval.size=64 eval.temperature=1.0

The numbers are `rlbal.evaluate`'s; this module picks the model (a checkpoint that verifies, or the base),
builds the engine and the correctness reward (`rlbal.assemble`), prints a table and appends a JSON line to
RUN_DIR/eval.jsonl.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rlbal.evaluate import evaluate, report_ks


def pick_model(run_dir: Path, cfg: Any, checkpoint: Path | None, base: bool) -> tuple[Path, int | None]:
    """(HF model folder, step) to evaluate: --base = the config's starting model (step 0), --checkpoint =
    a checkpoint folder (its model/, verified against its manifest) or a model folder, default = the run's
    newest complete checkpoint that verifies (a damaged newer one is skipped with one warning line)."""
    from rlbal.assets import resolve_model
    from rlbal.errors import CheckpointError
    from rlbal.learner.checkpoint import newest_verified, verify_checkpoint
    from rlbal.model_files import check_model_folder

    if base:
        return resolve_model(cfg.model.path), 0
    if checkpoint is not None:
        folder = checkpoint / "model" if (checkpoint / "model" / "config.json").is_file() else checkpoint
        if not (folder / "config.json").is_file():
            raise CheckpointError(
                f"--checkpoint {checkpoint}: neither a checkpoint folder (with model/) nor a "
                "model folder (with config.json)"
            )
        problem = verify_checkpoint(checkpoint) if (checkpoint / "COMPLETE").is_file() else None
        if problem:
            raise CheckpointError(f"--checkpoint {checkpoint}: the checkpoint is damaged ({problem})")
        m = re.match(r"^step_(\d+)$", checkpoint.name)
        return check_model_folder(folder), int(m.group(1)) if m else None
    path = newest_verified(run_dir, hint="pass --checkpoint PATH or --base")
    if path is None:
        raise CheckpointError(
            f"{run_dir}: no complete checkpoint in {run_dir / 'checkpoints'}; pass --checkpoint PATH or --base"
        )
    return path / "model", int(path.name.removeprefix("step_"))


def results_table(metrics: dict[str, float], k: int) -> Any:
    """A rich Table: one row per group (all, each level, each task), columns pass@j, mean@k, greedy pass@1."""
    from rich.table import Table

    cols = [f"pass@{j}" for j in report_ks(k)] + [f"mean@{k}", "greedy/pass@1"]
    table = Table(title=f"eval (k={k}; greedy = greedy pass@1)")
    for name in ("group", "prompts", *cols):
        table.add_column(name.replace("greedy/pass@1", "greedy"), justify="left" if name == "group" else "right")
    groups = [""] + sorted({key.split("/")[1] for key in metrics if re.match(r"^eval/(level|task)_[^/]+/", key)})
    for group in groups:
        prefix = f"eval/{group}/" if group else "eval/"
        values = [f"{metrics[prefix + c]:.3f}" for c in cols]
        table.add_row(group or "all", f"{metrics[prefix + 'n_prompts']:.0f}", *values)
    return table


def _parser() -> argparse.ArgumentParser:
    from rlbal.errors import ArgumentParser

    p = ArgumentParser(
        prog="rlbal eval",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="pass@k (unbiased estimator), mean@k and greedy pass@1 of a run's model on its held-out\n"
        "prompts (the config's eval section), overall and per difficulty level / task.\n"
        "Loads RUN_DIR/config.yaml, prints a table, appends one JSON line to RUN_DIR/eval.jsonl.",
        epilog="examples:\n"
        "  rlbal eval runs/quickstart                       # newest complete checkpoint\n"
        "  rlbal eval runs/quickstart --base --k 8          # the starting model, 8 samples per prompt\n"
        "  rlbal eval runs/quickstart eval.size=64 eval.temperature=1.0 --engine hf",
    )
    p.add_argument("run_dir", type=Path, help="run directory (with config.yaml and checkpoints/)")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides of the run's config (e.g. eval.size=64)")
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="a checkpoint folder (RUN/checkpoints/step_N) or an HF model folder "
        "(default: the newest complete checkpoint)",
    )
    which.add_argument("--base", action="store_true", help="evaluate the config's starting model (model.path)")
    p.add_argument("--k", type=int, default=None, help="samples per prompt (default: the config's eval.k)")
    p.add_argument(
        "--engine",
        choices=("hf", "vllm"),
        default=None,
        help="generation backend (default: the config's rollout.engine)",
    )
    p.add_argument("--verbose", action="store_true", help="show third-party logs in full (vLLM INFO, warnings)")
    return p


def eval_main(argv: Sequence[str] | None = None) -> int:
    """`rlbal eval RUN_DIR [--checkpoint PATH | --base] [--k K] [--engine hf|vllm] [key.sub=value ...]`.
    Bad input raises a `rlbal.errors.UserError` (one line via `rlbal.cli`), checked before any model loads."""
    args = _parser().parse_intermixed_args(argv)  # overrides may come before or after the options
    from rlbal.config import load_config
    from rlbal.errors import UserError
    from rlbal.preflight import check_eval

    if not (args.run_dir / "config.yaml").is_file():
        raise UserError(f"{args.run_dir / 'config.yaml'} not found (not a run directory?)")
    if args.k is not None and args.k < 1:
        raise UserError(f"--k must be >= 1, got {args.k}")
    # --k and --engine are shorthands for the config keys they set.
    overrides = [
        *args.overrides,
        *([f"eval.k={args.k}"] if args.k else []),
        *([f"rollout.engine={args.engine}"] if args.engine else []),
    ]
    cfg = load_config(args.run_dir / "config.yaml", overrides)
    check_eval(cfg)  # the reward and the held-out prompts, before any model loads
    model_dir, step = pick_model(args.run_dir, cfg, args.checkpoint, args.base)
    metrics = _evaluate_model(cfg, model_dir)
    from rich.console import Console

    Console().print(results_table(metrics, cfg.eval.k))
    record = {
        "step": step,
        "checkpoint": str(model_dir),
        "engine": cfg.rollout.engine,
        "k": cfg.eval.k,
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        **metrics,
    }
    with open(args.run_dir / "eval.jsonl", "a") as fh:
        fh.write(json.dumps(record) + "\n")
    print(f"appended to {args.run_dir / 'eval.jsonl'}")
    return 0


def _evaluate_model(cfg: Any, model_dir: Path) -> dict[str, float]:
    """Engine and reward exactly as the trainer builds them (rlbal.assemble), scoring correctness only."""
    from transformers import AutoTokenizer

    from reward.executor import RewardExecutor
    from rlbal.assemble import correctness_spec, engine_options, eval_prompts
    from rlbal.rollout import make_engine

    prompts = eval_prompts(cfg, AutoTokenizer.from_pretrained(str(model_dir)))
    engine = make_engine(cfg.rollout.engine, model_dir, **engine_options(cfg))
    with RewardExecutor(
        correctness_spec(cfg),
        num_workers=cfg.reward.workers,
        timeout_s=cfg.reward.timeout_s,
        threshold=cfg.reward.correct_threshold,
    ) as rewards:
        return evaluate(
            engine,
            prompts,
            rewards,
            k=cfg.eval.k,
            temperature=cfg.eval.temperature,
            top_p=cfg.eval.top_p,
            max_new_tokens=cfg.rollout.max_new_tokens,
            seed=cfg.run.seed,
            stop=tuple(cfg.rollout.stop),
        )
