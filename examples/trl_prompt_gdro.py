"""Prompt-GDRO inside TRL: a small `GRPOTrainer` subclass that reweights TRL's advantages by difficulty bin.

The narrowest override point in TRL 1.16 is `_generate_and_score_completions(inputs)`: it receives the
generation batch (each prompt repeated `num_generations` times, in group order), generates, scores and
returns a dict whose "advantages" (one per completion) the loss multiplies. The subclass

  1. reads a stable prompt id column of the dataset ("prompt_id": the row index) and calls
     `Controllers.decide(ids)` before generation (bins from the pass-rate history up to the previous step);
  2. lets TRL generate, score and compute its group-normalised advantages, then multiplies them by the
     Prompt-GDRO weight of each completion's prompt;
  3. feeds `Controllers.observe` each prompt's correctness (reward of the first reward function > threshold,
     kept by a one-line `_calculate_rewards` override) with the reward-derived "failure_rate" loss signal.
     TRL updates the policy only after this method returns, so the signal cannot be the update's clipped
     surrogate; rlbal's docs explain why the surrogate is ~0 per prompt anyway.

Rollout-GDRO does not apply: TRL draws a fixed `num_generations` completions for every prompt (its
advantages reshape rewards to (-1, num_generations)), so per-prompt rollout counts have nowhere to go; the
controllers are built without it and every prompt gets `num_generations`. rlbal's own trainer
(`rlbal train recipes/rollout_gdro.yaml`) is the place for variable counts.

Multi-process: ids and rewards are gathered, so every rank decides and observes the whole generation batch
and the controllers stay identical across ranks; each rank weights its own slice. The controllers' state is
saved as `controllers.json` in every checkpoint and restored on resume (TRL's own pattern for its entropy
controller); each step's decisions are appended to `output_dir/controller_decisions.jsonl`. Offline: the
tiny SFT model asset and reasoning-gym prompts generated locally.

    python examples/trl_prompt_gdro.py --steps 20 --output-dir /tmp/trl_gdro
"""

import argparse
import json
import os

import numpy as np
import torch
from accelerate.utils import gather_object
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from rlbal.versions import TRL, require

require(*TRL)  # the subclass below overrides TRL internals: fail with the supported range, not deep inside TRL
from trl import GRPOConfig, GRPOTrainer  # noqa: E402

from reward.math import math_reward  # noqa: E402
from rlbal.assets import resolve_model  # noqa: E402
from rlbal.controllers import ClassifierConfig, Controllers, PromptGDROConfig, PromptResult  # noqa: E402
from rlbal.data import BOXED_INSTRUCTION, procedural_table  # noqa: E402


class PromptGDROTrainer(GRPOTrainer):
    """GRPOTrainer whose advantages are multiplied by rlbal's Prompt-GDRO weights (see the module docstring)."""

    def __init__(
        self, *args, controllers: Controllers, id_column: str = "prompt_id", correct_threshold: float = 0.5, **kwargs
    ):
        super().__init__(*args, **kwargs)
        if controllers.rollout is not None:
            raise ValueError("PromptGDROTrainer: controllers.rollout must be None (TRL draws a fixed num_generations)")
        self.controllers, self.id_column, self.correct_threshold = controllers, id_column, correct_threshold
        # per step: what the controllers decided and what it changed (one JSON line each)
        self.decisions_path = os.path.join(self.args.output_dir, "controller_decisions.jsonl")

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        self._rewards_RF = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        return self._rewards_RF  # (R, F) gathered over processes, in group order

    def _generate_and_score_completions(self, inputs):
        if not self.model.training:  # evaluation: plain TRL
            return super()._generate_and_score_completions(inputs)
        G = self.num_generations
        ids_R = np.asarray(gather_object([x[self.id_column] for x in inputs]), np.int64)
        alloc = self.controllers.decide(ids_R[::G])
        out = super()._generate_and_score_completions(inputs)
        group_R = np.arange(ids_R.size) // G
        rank = self.accelerator.process_index
        mine = slice(rank * len(inputs), (rank + 1) * len(inputs))
        raw_R = out["advantages"]
        out["advantages"] = raw_R * torch.as_tensor(
            alloc.weights[group_R][mine], dtype=raw_R.dtype, device=raw_R.device
        )
        rewards_RF = torch.nan_to_num(self._rewards_RF).cpu()
        reward_R = (rewards_RF * self.reward_weights.cpu()).sum(1).numpy()
        correct_R = rewards_RF[:, 0].numpy() > self.correct_threshold
        result = PromptResult.from_responses(alloc.ids, alloc.bins, group_R, correct_R, reward_R, signal="failure_rate")
        self.controllers.observe(result)
        if self.accelerator.is_main_process:
            self._log_decision(
                {
                    "step": self.state.global_step + 1,
                    "ids": alloc.ids.tolist(),
                    "bins": alloc.bins.tolist(),
                    "weights": alloc.weights.tolist(),
                    "n_correct": result.n_correct.tolist(),
                    "rewards": reward_R.tolist(),
                    "advantages_trl": raw_R.tolist(),
                    "advantages": out["advantages"].tolist(),
                }
            )
        return out

    def _log_decision(self, row: dict) -> None:
        os.makedirs(self.args.output_dir, exist_ok=True)
        with open(self.decisions_path, "a") as f:
            f.write(json.dumps(row) + "\n")

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if self.model.training:
            logs.update(self.controllers.metrics())
        super().log(logs, start_time)

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        if self.args.should_save:
            folder = os.path.join(
                self._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            )
            with open(os.path.join(folder, "controllers.json"), "w") as f:
                json.dump(self.controllers.state_dict(), f)

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        path = os.path.join(checkpoint, "controllers.json") if checkpoint else None
        if path and os.path.exists(path):
            with open(path) as f:
                self.controllers.load_state_dict(json.load(f))


def chain_sum_dataset(size: int, seed: int) -> Dataset:
    """Conversational prompts of chain_sum levels 1-3 with answers and a stable id column (the row)."""
    table = procedural_table(("chain_sum",), levels=(1, 2, 3), size=size, seed=seed)
    prompts = [[{"role": "user", "content": f"{m[-1]['content']}\n{BOXED_INSTRUCTION}"}] for m in table.messages]
    return Dataset.from_dict({"prompt": prompts, "answer": table.answers, "prompt_id": list(range(len(prompts)))})


def correctness(completions, answer, **kwargs) -> list[float]:
    """1.0 when the last \\boxed{} (or last number) equals the answer (rlbal's math reward)."""
    return [
        math_reward(c[-1]["content"], a, extraction="boxed_or_last_number").score for c, a in zip(completions, answer)
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny-sft", help="rlbal asset name or a local HF folder")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--prompts", type=int, default=8, help="prompts per step")
    ap.add_argument("--num-generations", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--size", type=int, default=64, help="prompts per difficulty level")
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--output-dir", default="runs/trl_prompt_gdro")
    args = ap.parse_args()
    path = resolve_model(args.model)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    start = {k: v.detach().clone() for k, v in model.state_dict().items()}
    config = GRPOConfig(
        output_dir=args.output_dir,
        max_steps=args.steps,
        learning_rate=args.lr,
        seed=args.seed,
        per_device_train_batch_size=args.prompts * args.num_generations,
        num_generations=args.num_generations,
        max_completion_length=args.max_new_tokens,
        temperature=1.0,
        beta=0.0,
        loss_type="dapo",
        gradient_checkpointing=False,
        bf16=False,
        use_cpu=not torch.cuda.is_available(),
        report_to=[],
        logging_steps=1,
        save_strategy="steps",
        save_steps=args.steps,
    )
    ctl = Controllers.from_configs(
        ClassifierConfig(num_bins=5, window=50, hysteresis=0.03),
        PromptGDROConfig(),
        rollout=None,
        n_rollouts=args.num_generations,
    )
    trainer = PromptGDROTrainer(
        model=model,
        reward_funcs=correctness,
        args=config,
        train_dataset=chain_sum_dataset(args.size, args.seed),
        processing_class=AutoTokenizer.from_pretrained(path),
        controllers=ctl,
    )
    trainer.train()
    moved = [float((v - start[k]).norm()) for k, v in trainer.model.state_dict().items()]
    print(
        "RESULT "
        + json.dumps(
            {
                "decisions_path": trainer.decisions_path,
                "metrics": ctl.metrics(),
                "param_delta": float(np.linalg.norm(moved)),
                "tensors_moved": sum(m > 0 for m in moved),
                "tensors": len(moved),
                "controllers_state": ctl.state_dict(),
            }
        )
    )


if __name__ == "__main__":
    main()
