"""The GPU check of rlbal in one process tree: build a model, run the CUDA tests, train GRPO and GDRO, compare with TRL.

Driven by benchmarks/gpu/run.sh (read that first). Two commands:

    gpu_run.py prepare [--wheels]   here, with the full venv: the prompt files (reasoning-gym's chain_sum, levels
                                    1-3, which the GPU machine cannot generate) and, with --wheels, the Python
                                    packages it lacks, into .cache/gpu-carry/ (git-ignored, < 10 MiB)
    gpu_run.py run [--cpu]          there: everything below, results into $OUT (gpu_summary.json, gpu_summary.md)

`run`, in order, each part timed and recorded even when an earlier one failed:
  1. model     a Llama built from its config (SIZES: ~76 M parameters on the GPU, the 0.4 M tiny one with --cpu),
               with a byte-level BPE tokenizer trained on the prompt file, warm-started by a short SFT on the
               prompts' "The answer is \\boxed{N}." targets (bf16 autocast on CUDA), saved as an HF folder
  2. tests     `pytest -m gpu` on GPU_TESTS (the tests marked for CUDA: learner device moves, bf16, gradient
               checkpointing, transformers generation on CUDA); on a CPU machine they are skipped
  3. train     `python -m rlbal.train` twice on that model and the prompt file, transformers engine, bf16
               weights, gradient checkpointing: GRPO (recipes/grpo.yaml) and GDRO (recipes/gdro.yaml); the
               per-step breakdown (generate / score / update / step) from metrics.jsonl
  4. trl       benchmarks/bench_trl.py on the same model, prompts, batch, lengths, dtype and checkpointing:
               rlbal vs TRL's GRPOTrainer (when TRL is importable), with the floor (bare generate + fwd/bwd)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CARRY = ROOT / ".cache" / "gpu-carry"
LEVELS = (1, 2, 3)
# Model sizes: hidden, layers, heads, KV heads, MLP width. gpu: 12 x (2 x 768^2 + 2 x 768 x 256 + 3 x 768 x 2048)
# + 512 x 768 embeddings (tied) = 75.9 M parameters.
SIZES = {
    "gpu": dict(
        hidden_size=768, num_hidden_layers=12, num_attention_heads=12, num_key_value_heads=4, intermediate_size=2048
    ),
    "cpu": dict(
        hidden_size=128, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, intermediate_size=256
    ),
}
# The RL setting of both modes: prompts per step, rollouts, new tokens, steps; SFT steps and batch; eval prompts.
SETTINGS = {
    "gpu": dict(
        prompts=16,
        n=8,
        max_new_tokens=64,
        steps=4,
        sft_steps=300,
        sft_batch=64,
        sft_lr=1e-3,
        eval_size=48,
        trl_steps=3,
        device="cuda",
    ),
    "cpu": dict(
        prompts=4,
        n=2,
        max_new_tokens=12,
        steps=2,
        sft_steps=30,
        sft_batch=16,
        sft_lr=3e-3,
        eval_size=3,
        trl_steps=1,
        device="cpu",
    ),
}
# The files holding tests marked `gpu`: collecting the whole suite would import Ray, vLLM and DeepSpeed, which
# the GPU image does not have.
GPU_TESTS = ("tests/gpu", "tests/algo/test_device.py")
WHEELS = (
    "pydantic==2.14.4",
    "pydantic-core==2.50.5",
    "annotated-types",
    "typing-inspection",
    "typing-extensions",
    "math-verify==0.9.0",
    "latex2sympy2-extended==1.11.0",
    "antlr4-python3-runtime==4.13.2",
    "trl==1.16.0",
    "datasets==5.2.0",
    "dill",
    "multiprocess",
)


# ----------------------------------------------------------------------------- prepare (here)


def prepare(out: Path, wheels: bool, size: int = 512, eval_size: int = 64) -> None:
    """Prompt files (train: `size` per level, seed 0; eval: `eval_size` per level, seed 1) and, optionally,
    the wheels for Python 3.12 on x86-64 that the GPU image lacks."""
    from rlbal.data import procedural_table

    out.mkdir(parents=True, exist_ok=True)
    for name, n, seed in (("train", size, 0), ("eval", eval_size, 1)):
        table = procedural_table(("chain_sum",), levels=LEVELS, size=n, seed=seed)
        rows = [
            {"id": key, "prompt": m[-1]["content"], "answer": a, "difficulty": int(d)}
            for key, m, a, d in zip(table.keys, table.messages, table.answers, table.difficulty)
        ]
        (out / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if wheels:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--python-version",
                "3.12",
                "--implementation",
                "cp",
                "--platform",
                "manylinux_2_28_x86_64",
                "--platform",
                "manylinux_2_17_x86_64",
                "--platform",
                "manylinux2014_x86_64",
                "-d",
                str(out / "wheels"),
                *WHEELS,
            ],
            check=True,
        )
    print(f"prepared {out}: {sorted(p.name for p in out.iterdir())}")


# ----------------------------------------------------------------------------- 1. model


def read_rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def build_model(rows: list[dict[str, Any]], out: Path, mode: str) -> dict[str, Any]:
    """Tokenizer trained on the prompts, Llama of SIZES[mode] from its config, SFT warm start; saved to `out`."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    from rlbal.assets import sft_target, train_tiny_tokenizer
    from rlbal.data import BOXED_INSTRUCTION

    s = SETTINGS[mode]
    chats = [[{"role": "user", "content": f"{r['prompt']}\n{BOXED_INSTRUCTION}"}] for r in rows]
    targets = [sft_target(str(r["answer"])) for r in rows]
    tok = train_tiny_tokenizer(
        [
            f"<|im_start|>user\n{c[0]['content']}<|im_end|>\n<|im_start|>assistant\n{t}<|im_end|>\n"
            for c, t in zip(chats, targets)
        ]
    )
    ids = dict(
        bos_token_id=tok.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    config = LlamaConfig(vocab_size=512, max_position_embeddings=512, tie_word_embeddings=True, **SIZES[mode], **ids)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(s["device"])
    prompts = [tok.apply_chat_template(c, add_generation_prompt=True, tokenize=True, return_dict=False) for c in chats]
    answers = [tok(t + tok.eos_token, add_special_tokens=False)["input_ids"] for t in targets]
    losses, seconds = sft(model, prompts, answers, tok.pad_token_id, s)
    model.generation_config = GenerationConfig(**ids)
    model.to("cpu").save_pretrained(out)
    tok.save_pretrained(out)
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "sft_steps": s["sft_steps"],
        "sft_loss_first": losses[0],
        "sft_loss_last": statistics.mean(losses[-10:]),
        "sft_s": seconds,
    }


def sft(model, prompts: list[list[int]], answers: list[list[int]], pad_id: int, s: dict[str, Any]):
    """Next-token loss on the answer tokens; bf16 autocast on CUDA, fp32 weights and AdamW."""
    import torch

    seqs = [p + a for p, a in zip(prompts, answers)]
    width = max(map(len, seqs))
    ids_NT = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    labels_NT = torch.full_like(ids_NT, -100)
    for i, (p, q) in enumerate(zip(prompts, seqs)):
        ids_NT[i, : len(q)] = torch.tensor(q)
        labels_NT[i, len(p) : len(q)] = ids_NT[i, len(p) : len(q)]
    ids_NT, labels_NT = ids_NT.to(s["device"]), labels_NT.to(s["device"])
    opt = torch.optim.AdamW(model.parameters(), lr=s["sft_lr"])
    gen = torch.Generator().manual_seed(0)
    losses, t0 = [], time.perf_counter()
    model.train()
    for _ in range(s["sft_steps"]):
        rows = torch.randint(0, len(seqs), (s["sft_batch"],), generator=gen).to(s["device"])
        with torch.autocast(s["device"], dtype=torch.bfloat16, enabled=s["device"] == "cuda"):
            loss = model(input_ids=ids_NT[rows], attention_mask=ids_NT[rows] != pad_id, labels=labels_NT[rows]).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses, time.perf_counter() - t0


# ----------------------------------------------------------------------------- 2-4. tests, training, TRL


def run_tests(log: Path) -> dict[str, Any]:
    """`pytest -m gpu` over GPU_TESTS: counts of passed / skipped / failed from pytest's summary line."""
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", *GPU_TESTS],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    log.write_text(proc.stdout + proc.stderr)
    counts = {
        k: int(v)
        for v, k in re.findall(
            r"(\d+) (passed|skipped|failed|error|errors|deselected)",
            proc.stdout.splitlines()[-1] if proc.stdout else "",
        )
    }
    return {"returncode": proc.returncode, **counts}


def train(name: str, recipe: str, model: Path, data: Path, work: Path, mode: str, log: Path) -> dict[str, Any]:
    """One `python -m rlbal.train` run; the median breakdown of its steps after the first (which warms up)."""
    s = SETTINGS[mode]
    args = [
        f"model.path={model}",
        "model.dtype=bfloat16",
        "model.gradient_checkpointing=true",
        "rollout.engine=hf",
        "data.source=files",
        f"data.paths=[{data / 'train.jsonl'}]",
        "data.difficulty_field=difficulty",
        "data.id_field=id",
        "eval.source=files",
        f"eval.paths=[{data / 'eval.jsonl'}]",
        f"eval.size={s['eval_size']}",
        "eval.k=2",
        "eval.every=0",
        f"train.prompts_per_step={s['prompts']}",
        f"rollout.n={s['n']}",
        f"rollout.max_new_tokens={s['max_new_tokens']}",
        f"run.max_steps={s['steps']}",
        "checkpoint.every=0",
        "logging.plots=false",
        "logging.progress=false",
        "logging.tensorboard=false",
        "reward.workers=2",
        "run.resume=never",
        f"run.output_dir={work / 'runs'}",
        f"run.name={name}",
    ]
    if recipe == "gdro.yaml":
        args.append(f"controllers.rollout.n_bar={s['n']}")
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "rlbal.train", str(ROOT / "recipes" / recipe), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    log.write_text(proc.stdout + proc.stderr)
    out: dict[str, Any] = {"returncode": proc.returncode, "wall_s": time.perf_counter() - t0}
    metrics = work / "runs" / name / "metrics.jsonl"
    if proc.returncode != 0 or not metrics.is_file():
        return {**out, "error": (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]}
    steps = [r for r in map(json.loads, metrics.read_text().splitlines()) if "timing/step" in r]
    timed = steps[1:] or steps
    out["steps"] = len(steps)
    for key in ("step", "generate", "score", "update", "weight_sync"):
        out[f"{key}_s"] = statistics.median(r.get(f"timing/{key}", 0.0) for r in timed)
    out["reward_first"], out["reward_last"] = steps[0]["reward/mean"], steps[-1]["reward/mean"]
    out["loss_finite"] = all(abs(r.get("loss/total", r.get("loss/policy", 0.0))) < 1e6 for r in steps)
    out["runtime_line"] = next((ln for ln in proc.stdout.splitlines() if "[rlbal] runtime:" in ln), "")[:200]
    return out


def trl_bench(model: Path, data: Path, mode: str, work: Path, log: Path) -> dict[str, Any]:
    """benchmarks/bench_trl.py on the same setting (transformers engine on both sides; TRL if importable)."""
    s = SETTINGS[mode]
    summary = work / "trl_summary.json"
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "bench_trl.py"),
        "--device",
        s["device"],
        "--engines",
        "hf",
        "--model-path",
        str(model),
        "--data",
        str(data / "train.jsonl"),
        "--dtype",
        "bfloat16",
        "--gradient-checkpointing",
        "--prompts",
        str(s["prompts"]),
        "--n",
        str(s["n"]),
        "--max-new-tokens",
        str(s["max_new_tokens"]),
        "--steps",
        str(s["trl_steps"]),
        "--warmup",
        "1",
        "--rounds",
        "1",
        "--summary",
        str(summary),
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    log.write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0 or not summary.is_file():
        return {"returncode": proc.returncode, "error": (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]}
    keep = (
        "framework",
        "engine",
        "devices",
        "failed",
        "median_step_s",
        "best_step_s",
        "generate_s",
        "score_s",
        "update_s",
        "other_s",
        "reward_mean",
        "len_mean",
        "logprob_gap",
        "floor",
    )
    rows = [{k: r[k] for k in keep if k in r} for r in json.loads(summary.read_text())]
    return {
        "returncode": 0,
        "rows": rows,
        "report": [ln for ln in proc.stdout.splitlines() if ln.startswith(("TRL ", "floor", "(no TRL"))],
    }


# ----------------------------------------------------------------------------- report


def markdown(summary: dict[str, Any]) -> str:
    s = summary
    lines = [
        f"# rlbal GPU check ({s['mode']} mode)",
        "",
        f"- device: {s['device']}; torch {s['torch']}, transformers {s['transformers']}; wall time {s['wall_s']:.0f} s",
        f"- model: {s['model'].get('parameters', 0) / 1e6:.1f} M parameters, SFT {s['model'].get('sft_steps')} "
        f"steps in {s['model'].get('sft_s', 0):.1f} s, loss {s['model'].get('sft_loss_first', 0):.2f} -> "
        f"{s['model'].get('sft_loss_last', 0):.2f}",
        f"- CUDA tests (`pytest -m gpu`): {json.dumps(s['tests'])}",
        "",
        "| run | rc | steps | step s | generate s | score s | update s | reward first -> last |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in ("grpo", "gdro"):
        r = s["train"].get(name, {})
        if "step_s" in r:
            lines.append(
                f"| {name} | {r['returncode']} | {r['steps']} | {r['step_s']:.3f} | {r['generate_s']:.3f} | "
                f"{r['score_s']:.3f} | {r['update_s']:.3f} | "
                f"{r['reward_first']:.3f} -> {r['reward_last']:.3f} |"
            )
        else:
            lines.append(f"| {name} | {r.get('returncode')} | failed: {r.get('error', '?')} | | | | | |")
    lines += ["", "bench_trl.py (same model, prompts, batch, lengths, bf16, gradient checkpointing):", ""]
    t = s["trl"]
    for r in t.get("rows", []):
        lines.append(
            f"- {r['framework']} {r['engine']}: "
            + (
                f"FAILED {r['failed']}"
                if "failed" in r
                else f"median step {r['median_step_s']:.3f} s (generate {r['generate_s']:.3f}, score "
                f"{r['score_s']:.3f}, update {r['update_s']:.3f}), reward {r['reward_mean']:.3f}, "
                f"gap {r['logprob_gap']:.1e}"
            )
        )
    lines += [f"- {ln}" for ln in t.get("report", [])] or [f"- failed: {t.get('error')}"]
    return "\n".join(lines) + "\n"


def run(mode: str, out: Path) -> int:
    import torch
    import transformers

    t0 = time.perf_counter()
    if mode == "gpu" and not torch.cuda.is_available():
        sys.exit("gpu_run.py run: no CUDA device (use --cpu for the small CPU setting)")
    data = CARRY
    if not (data / "train.jsonl").is_file():
        sys.exit(f"{data}/train.jsonl missing: run `bash benchmarks/gpu/run.sh --prepare` first (and carry it)")
    work = Path(os.environ.get("RLBAL_GPU_WORK", "/tmp/rlbal-gpu"))
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.cuda.get_device_name(0) if mode == "gpu" else "cpu"
    summary: dict[str, Any] = {
        "mode": mode,
        "device": device,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "setting": SETTINGS[mode],
        "train": {},
    }
    model = work / "model"
    summary["model"] = build_model(read_rows(data / "train.jsonl"), model, mode)
    print(f"[gpu] model: {summary['model']}", flush=True)
    summary["tests"] = run_tests(work / "tests.log")
    print(f"[gpu] tests: {summary['tests']}", flush=True)
    for name, recipe in (("grpo", "grpo.yaml"), ("gdro", "gdro.yaml")):
        summary["train"][name] = train(name, recipe, model, data, work, mode, work / f"{name}.log")
        print(f"[gpu] {name}: {summary['train'][name]}", flush=True)
    summary["trl"] = trl_bench(model, data, mode, work, work / "trl.log")
    print(f"[gpu] bench_trl: {summary['trl']}", flush=True)
    summary["wall_s"] = time.perf_counter() - t0
    (out / "gpu_summary.json").write_text(json.dumps(summary, indent=1, default=str))
    (out / "gpu_summary.md").write_text(markdown(summary))
    logs = [work / f"{n}.log" for n in ("tests", "grpo", "gdro", "trl")]
    (out / "gpu_logs.txt").write_text(
        "".join(f"===== {p.name}\n{p.read_text()[-20000:]}\n" for p in logs if p.is_file())
    )
    print(markdown(summary), flush=True)
    ok = (
        summary["tests"]["returncode"] in (0, 5)
        and all(r.get("returncode") == 0 for r in summary["train"].values())
        and summary["trl"].get("returncode") == 0
    )
    return 0 if ok else 1


def main() -> None:
    from rlbal.runtime_env import apply_env

    apply_env()  # the environment of an rlbal run (offline hub, OpenMP policy) for this process and its children
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="prompt files (and wheels) into .cache/gpu-carry/")
    p.add_argument("--wheels", action="store_true", help="also download the wheels the GPU image lacks")
    r = sub.add_parser("run", help="build, test, train, compare; results into --out")
    r.add_argument("--cpu", action="store_true", help="the small CPU setting (for a machine without a GPU)")
    r.add_argument("--out", default=os.environ.get("OUT", "runs/gpu"), help="result folder (default $OUT)")
    args = ap.parse_args()
    if args.command == "prepare":
        prepare(CARRY, args.wheels)
    else:
        sys.exit(run("cpu" if args.cpu else "gpu", Path(args.out)))


if __name__ == "__main__":
    main()
