"""TRL's side of benchmarks/bench_trl.py: GRPOTrainer with timers around generation, scoring and the training
step, on the settings bench_trl.py's docstring lists (one child process per configuration)."""

from __future__ import annotations

import time
from typing import Any

from bench_trl import _mean, dataset_rows, gap_prompts, logprob_gap, summarise


def timed_trainer_class():
    """GRPOTrainer with wall-clock timers around generation, scoring and the training step."""
    from trl import GRPOTrainer

    class TimedGRPOTrainer(GRPOTrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.acc = dict.fromkeys(("generate", "score", "gen_and_score", "training_step"), 0.0)
            self.t_train_end = 0.0

        def _timed(self, key: str, fn, *args):
            t0 = time.perf_counter()
            out = fn(*args)
            self.acc[key] += time.perf_counter() - t0
            return out

        def _generate(self, prompts):
            return self._timed("generate", super()._generate, prompts)

        def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
            return self._timed("score", super()._calculate_rewards, inputs, prompts, completions, completion_ids_list)

        def _generate_and_score_completions(self, inputs):
            return self._timed("gen_and_score", super()._generate_and_score_completions, inputs)

        def training_step(self, model, inputs, num_items_in_batch):
            out = self._timed("training_step", super().training_step, model, inputs, num_items_in_batch)
            self.t_train_end = time.perf_counter()
            return out

    return TimedGRPOTrainer


def step_recorder(trainer_ref: list):
    """A callback that closes one timing record per optimizer step (from `on_step_end` to `on_step_end`)."""
    from transformers import TrainerCallback

    class StepRecorder(TrainerCallback):
        def __init__(self):
            self.steps: list[dict[str, float]] = []
            self.last = None

        def on_step_begin(self, args, state, control, **kw):
            self.last = self.last or time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            tr, now = trainer_ref[0], time.perf_counter()
            a = tr.acc
            update = a["training_step"] - a["gen_and_score"] + (now - tr.t_train_end)  # + clip, optimizer, zero_grad
            step = now - self.last
            self.steps.append(
                {
                    "step": step,
                    "generate": a["generate"],
                    "score": a["score"],
                    "update": update,
                    "other": step - a["generate"] - a["score"] - update,
                }
            )
            tr.acc = dict.fromkeys(a, 0.0)
            self.last = now

    return StepRecorder()


def run_trl(spec: dict[str, Any], out_dir: str) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig

    from reward.math import math_reward
    from rlbal.assets import resolve_model

    def correctness(completions, answer, **kwargs):
        return [
            math_reward(c[-1]["content"], a, extraction="boxed_or_last_number").score
            for c, a in zip(completions, answer)
        ]

    path = resolve_model(spec["model"])
    chats, answers = dataset_rows(spec["data_size"], spec["seed"], spec["data"])
    vllm = spec["engine"] == "vllm"
    config = GRPOConfig(
        output_dir=out_dir,
        max_steps=spec["warmup"] + spec["steps"],
        per_device_train_batch_size=spec["prompts"] * spec["n"],
        num_generations=spec["n"],
        gradient_accumulation_steps=1,
        steps_per_generation=1,
        num_iterations=1,
        max_completion_length=spec["max_new_tokens"],
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        beta=0.0,
        loss_type="dapo",
        epsilon=0.2,
        epsilon_high=0.28,
        scale_rewards="group",
        learning_rate=spec["lr"],
        max_grad_norm=1.0,
        gradient_checkpointing=spec["grad_ckpt"],
        bf16=spec["dtype"] == "bfloat16",
        use_cpu=spec["device"] == "cpu",
        seed=spec["seed"],
        report_to=[],
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
        use_vllm=vllm,
        vllm_mode="colocate",
        vllm_importance_sampling_correction=False,
    )
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, spec["dtype"]))
    trainer_ref: list = []
    recorder = step_recorder(trainer_ref)
    trainer = timed_trainer_class()(
        model=model,
        reward_funcs=correctness,
        args=config,
        processing_class=AutoTokenizer.from_pretrained(path),
        train_dataset=Dataset.from_dict({"prompt": chats, "answer": answers}),
        callbacks=[recorder],
    )
    trainer_ref.append(trainer)
    trainer.train()
    gap = trl_vllm_gap(trainer, spec) if vllm else 0.0  # transformers: TRL samples from the trained module itself
    logged = [h for h in trainer.state.log_history if "reward" in h][spec["warmup"] :]
    devices = {"learner": str(trainer.model.device), "engine": str(trainer.model.device)}
    return {
        **summarise(recorder.steps[spec["warmup"] :]),
        "devices": devices,
        "logprob_gap": gap,
        "reward_mean": _mean(h["reward"] for h in logged),
        "len_mean": _mean(h["completions/mean_length"] for h in logged),
    }


def trl_vllm_gap(trainer, spec: dict[str, Any]) -> float:
    """The engine/policy gap of TRL's colocated vLLM, after the weight sync TRL runs before each generation."""
    from vllm import SamplingParams

    trainer.vllm_generation.sync_weights()
    prompts = gap_prompts(trainer.processing_class, spec)
    outs = trainer.vllm_generation.llm.generate(
        [{"prompt_token_ids": p} for p in prompts], SamplingParams(max_tokens=16, temperature=1.0, logprobs=0, seed=1)
    )
    samples = [
        (p, list(o.outputs[0].token_ids), [d[t].logprob for d, t in zip(o.outputs[0].logprobs, o.outputs[0].token_ids)])
        for p, o in zip(prompts, outs)
    ]
    return logprob_gap(trainer.model, samples)
