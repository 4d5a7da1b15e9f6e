"""Rollout engines side by side: generation tokens/s (vLLM vs transformers) and weight-sync cost.

    source launch/env.sh
    .venv/bin/python benchmarks/bench_rollout.py                      # tiny model + SmolLM2-135M (~5 min on 2 cores)
    .venv/bin/python benchmarks/bench_rollout.py --models tiny        # ~1 min
    .venv/bin/python benchmarks/bench_rollout.py --no-multiprocess    # skip the separate-process vLLM engine
    .venv/bin/python benchmarks/bench_rollout.py --threads 2          # OMP_NUM_THREADS of the children (default 1)

Each model runs in a child process of its own (one in-process vLLM engine per process), fp32 on
both engines, with the same chat prompts and sampling (T = 1, a fixed seed). Measured per model:

- generation: `prompts x samples x max_new_tokens`, tokens actually generated / seconds, best of
  `--repeats` after a warm-up call, for vLLM (in-process, eager; and the separate-process engine,
  whose worker vLLM pins to one core) and transformers (`HFEngine`);
- weight sync of the full fp32 state dict (best of `--repeats`): vLLM in-process ("iterator") at a
  few bucket sizes, vLLM in a separate process ("shm_file"), transformers (`load` into its copy);
- the physical floor: a plain in-memory copy of the same tensors into preallocated buffers;
- correctness: after the syncs, max |engine - trainer| logprob on 4 fixed sequences (`logprob_gap`).

Children run with OMP_NUM_THREADS=1 by default: on a 2-core box that other jobs share, vLLM's CPU
kernels (which split every op over all threads) slowed down ~10x with 2 threads (docs/engines.md).
Prints one table per model with medians over the repeats and the ratios, and one JSON line per
model with every sample (`--out` appends them to a file).
The numbers recorded in docs/engines.md come from this script.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

QUESTIONS = [
    "What is 3 + 4?",
    "Compute 12 + 5 - 7.",
    "What is 6 times 7?",
    "Add 15 and 27.",
    "What is 100 - 58?",
    "Compute 2 + 2 + 2.",
    "What is 9 squared?",
    "Subtract 13 from 40.",
]
SIZES = {"tiny": dict(prompts=32, samples=4, new_tokens=64), "smollm2": dict(prompts=16, samples=4, new_tokens=64)}


def model_path(name: str) -> str:
    from rlbal import assets

    return str(assets.tiny_model() if name == "tiny" else assets.smollm2_135m())


def chat_prompts(path: str, n: int) -> list[list[int]]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    msgs = [
        [{"role": "user", "content": f"{QUESTIONS[i % len(QUESTIONS)]} Put the final answer in \\boxed{{}}."}]
        for i in range(n)
    ]
    return [tok.apply_chat_template(m, add_generation_prompt=True, tokenize=True, return_dict=False) for m in msgs]


def seconds(fn: Callable[[], Any], repeats: int) -> list[float]:
    """Wall seconds of `repeats` calls (the JSON keeps them all; tables show the median)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def tokens_per_s(engine: Any, prompts: list[list[int]], samples: int, new_tokens: int, repeats: int) -> list[float]:
    from rlbal.rollout import SamplingSpec

    spec = SamplingSpec(max_new_tokens=new_tokens, temperature=1.0, seed=0)
    engine.generate(prompts[:2], [2, 2], SamplingSpec(max_new_tokens=8, seed=0))  # warm-up
    out = []
    for _ in range(repeats):
        result = engine.generate(prompts, [samples] * len(prompts), spec)
        out.append(sum(len(c.token_ids) for c in result.completions) / result.timings["generate"])
    return out


def memcpy_floor(state: dict[str, Any], repeats: int) -> list[float]:
    import torch

    dst = {k: torch.empty_like(v) for k, v in state.items()}

    def copy_all() -> None:
        for k, v in state.items():
            dst[k].copy_(v)

    return seconds(copy_all, repeats)


def run_child(name: str, repeats: int, multiprocess: bool) -> dict[str, Any]:
    """Everything for one model, in this process."""
    import torch
    from transformers import AutoModelForCausalLM

    from rlbal.rollout import make_engine
    from rlbal.rollout.weight_sync import logprob_gap, state_nbytes

    path, size = model_path(name), SIZES[name]
    prompts = chat_prompts(path, size["prompts"])
    trainer = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    state = trainer.state_dict()
    check = (prompts[:4], [[(17 * i + 3 * j) % 500 + 10 for j in range(24)] for i in range(4)])  # fixed sequences
    out: dict[str, Any] = {
        "model": name,
        "mbytes": state_nbytes(state) / 2**20,
        "threads": torch.get_num_threads(),
        "load_avg_1min": os.getloadavg()[0],
        **size,
    }
    hf = make_engine("hf", path, dtype="float32", seed=0)
    out["hf_tok_s"] = tokens_per_s(hf, prompts, size["samples"], size["new_tokens"], repeats)
    out["hf_sync_s"] = seconds(lambda: hf.update_weights(state), repeats)
    out["hf_logprob_gap"] = logprob_gap(hf, trainer, *check)
    hf = None  # free it before vLLM starts
    vllm = make_engine("vllm", path, dtype="float32", seed=0)
    out["vllm_tok_s"] = tokens_per_s(vllm, prompts, size["samples"], size["new_tokens"], repeats)
    for mb in (16, 128, 1024):
        vllm.bucket_bytes = mb * 2**20
        out[f"vllm_sync_s_bucket{mb}"] = seconds(lambda: vllm.update_weights(state), repeats)
        out[f"vllm_calls_bucket{mb}"] = vllm.last_sync.buckets
    out["vllm_logprob_gap"] = logprob_gap(vllm, trainer, *check)
    out["memcpy_s"] = memcpy_floor(state, repeats)
    vllm = None
    if multiprocess:
        mp = make_engine("vllm", path, dtype="float32", seed=0, multiprocess=True)
        out["vllm_mp_tok_s"] = tokens_per_s(mp, prompts, size["samples"], size["new_tokens"], repeats)
        out["vllm_mp_sync_s"] = seconds(lambda: mp.update_weights(state), repeats)
        out["vllm_mp_calls"] = mp.last_sync.buckets
        mp.shutdown()
    return out


def table(raw: dict[str, Any]) -> str:
    r = {k: statistics.median(v) if isinstance(v, list) else v for k, v in raw.items()}
    floor = r["memcpy_s"]
    hf = r["hf_tok_s"]
    rows = [
        ("generation tok/s, transformers", f"{hf:.0f}", "1.0x"),
        ("generation tok/s, vLLM in-process", f"{r['vllm_tok_s']:.0f}", f"{r['vllm_tok_s'] / hf:.1f}x"),
    ]
    if "vllm_mp_tok_s" in r:
        rows.append(
            ("generation tok/s, vLLM separate process", f"{r['vllm_mp_tok_s']:.0f}", f"{r['vllm_mp_tok_s'] / hf:.1f}x")
        )
    rows.append((f"weight sync {r['mbytes']:.1f} MiB: memcpy floor", f"{floor * 1e3:.1f} ms", "1.0x"))
    for mb in (16, 128, 1024):
        s = r[f"vllm_sync_s_bucket{mb}"]
        rows.append(
            (
                f"  vLLM in-process, {mb} MiB buckets ({r[f'vllm_calls_bucket{mb}']} calls)",
                f"{s * 1e3:.1f} ms",
                f"{s / floor:.1f}x",
            )
        )
    if "vllm_mp_sync_s" in r:
        s = r["vllm_mp_sync_s"]
        rows.append(
            (
                f"  vLLM separate process, /dev/shm ({r['vllm_mp_calls']} calls)",
                f"{s * 1e3:.1f} ms",
                f"{s / floor:.1f}x",
            )
        )
    s = r["hf_sync_s"]
    rows.append(("  transformers load into its copy", f"{s * 1e3:.1f} ms", f"{s / floor:.1f}x"))
    rows.append(("max |engine - trainer| logprob after sync, vLLM", f"{r['vllm_logprob_gap']:.1e}", ""))
    rows.append(("max |engine - trainer| logprob after sync, transformers", f"{r['hf_logprob_gap']:.1e}", ""))
    head = (
        f"== {r['model']}: {r['prompts']} prompts x {r['samples']} samples x {r['new_tokens']} new tokens, fp32, "
        f"OMP threads {r['threads']} =="
    )
    width = max(len(a) for a, _, _ in rows)
    return "\n".join([head] + [f"{a:<{width}}  {b:>12}  {c:>8}" for a, b, c in rows])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["tiny", "smollm2"], choices=sorted(SIZES))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-multiprocess", action="store_true")
    ap.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the children (0: inherit)")
    ap.add_argument("--out", default=None, help="append one JSON line per model to this file")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print("RESULT " + json.dumps(run_child(args.child, args.repeats, not args.no_multiprocess)), flush=True)
        return
    for name in args.models:
        cmd = [sys.executable, __file__, "--child", name, "--repeats", str(args.repeats)]
        cmd += ["--no-multiprocess"] if args.no_multiprocess else []
        env = dict(os.environ, **({"OMP_NUM_THREADS": str(args.threads)} if args.threads else {}))
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            sys.exit(f"{name}: child failed (rc {proc.returncode})\n{proc.stderr[-4000:]}")
        result = json.loads(lines[-1].removeprefix("RESULT "))
        print(table(result) + "\n", flush=True)
        if args.out:
            with open(args.out, "a") as f:
                f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
