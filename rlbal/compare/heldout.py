"""Held-out scoring of one run's final policy (or its starting model) for `rlbal compare`, per prompt.

    python -m rlbal.compare.heldout RUN_DIR OUT.json --size 250 --k 8 [--base]

The held-out prompts are the run's eval section at `--size` per (task, level), minus every prompt whose text
also occurs in the run's training data (procedural tasks with few distinct problems repeat them): the
report asserts the two sets are disjoint and lists how many were dropped per level. Each prompt gets k
samples at the eval temperature and one greedy completion (`rlbal.evaluate.run_eval`); the file keeps, per
prompt, its key, level, the number of correct samples and the greedy outcome, so the comparison can
bootstrap over prompts.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def disjoint_heldout(cfg: Any, tokenizer: Any) -> tuple[Any, dict[str, int]]:
    """(PromptBatch of held-out prompts whose text is not in the training data, dropped count per level)."""
    from rlbal.assemble import eval_prompts
    from rlbal.data import format_from_config, load_prompts, spec_from_config
    from rlbal.evaluate import level_name

    train = load_prompts(spec_from_config(cfg.data, cfg.run.seed), tokenizer, format_from_config(cfg.data))
    seen = set(train.texts)
    held = eval_prompts(cfg, tokenizer)
    keep = np.array([t not in seen for t in held.texts], dtype=bool)
    dropped: dict[str, int] = {}
    for d, k in zip(held.difficulty, keep):
        if not k:
            name = level_name(float(d)) if np.isfinite(d) else "all"
            dropped[name] = dropped.get(name, 0) + 1
    if not keep.any():
        from rlbal.errors import UserError

        raise UserError(
            f"every held-out prompt of {cfg.eval.source} also occurs in the training data: nothing "
            "left to evaluate on (use more distinct problems or a larger eval.size)"
        )
    return held.select(np.flatnonzero(keep)), dropped


def score_run(run_dir: Path, out: Path, *, size: int, k: int, base: bool = False) -> dict[str, Any]:
    """Score the run's newest complete checkpoint (or its starting model) on the disjoint held-out set."""
    from transformers import AutoTokenizer

    from reward.executor import RewardExecutor
    from rlbal.assemble import correctness_spec, engine_options
    from rlbal.config import load_config
    from rlbal.eval_cli import pick_model
    from rlbal.evaluate import run_eval
    from rlbal.rollout import make_engine

    cfg = load_config(run_dir / "config.yaml", [f"eval.size={size}", f"eval.k={k}"])
    model_dir, step = pick_model(run_dir, cfg, None, base)
    t0 = time.perf_counter()
    prompts, dropped = disjoint_heldout(cfg, AutoTokenizer.from_pretrained(str(model_dir)))
    engine = make_engine(cfg.rollout.engine, model_dir, **engine_options(cfg))
    try:
        with RewardExecutor(
            correctness_spec(cfg),
            num_workers=cfg.reward.workers,
            timeout_s=cfg.reward.timeout_s,
            threshold=cfg.reward.correct_threshold,
        ) as rewards:
            result = run_eval(
                engine,
                prompts,
                rewards,
                k=k,
                temperature=cfg.eval.temperature,
                top_p=cfg.eval.top_p,
                max_new_tokens=cfg.rollout.max_new_tokens,
                seed=cfg.run.seed,
                stop=tuple(cfg.rollout.stop),
            )
    finally:
        shutdown = getattr(engine, "shutdown", None)
        if shutdown is not None:
            shutdown()
    record = {
        "run_dir": str(run_dir),
        "step": step,
        "base": base,
        "k": k,
        "temperature": cfg.eval.temperature,
        "keys": list(prompts.keys),
        "level": [float(d) for d in prompts.difficulty],
        "correct": result.samples.correct_matrix().sum(1).tolist(),
        "greedy": result.samples.greedy_correct().astype(int).tolist(),
        "dropped_overlap": dropped,
        "seconds": time.perf_counter() - t0,
        "metrics": result.metrics,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(record))
    tmp.replace(out)
    return record


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rlbal.compare.heldout", description=__doc__.splitlines()[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--size", type=int, required=True, help="held-out prompts per (task, level) before dropping")
    p.add_argument("--k", type=int, required=True, help="samples per prompt")
    p.add_argument("--base", action="store_true", help="score the run's starting model instead")
    args = p.parse_args(argv)
    score_run(args.run_dir, args.out, size=args.size, k=args.k, base=args.base)
    return 0


if __name__ == "__main__":
    import sys

    from rlbal.errors import guarded
    from rlbal.runtime_env import apply_env

    apply_env()
    raise SystemExit(guarded(main, sys.argv[1:], prog="rlbal compare"))
