"""Run logs: the per-step completions record (ids, bins, sampled completions), TensorBoard text (config and
completions), truncation on resume, and the end summary, on hand-built rounds of real records."""

from __future__ import annotations

import json

import numpy as np
import pytest

from reward.executor import ScoreBatch
from rlbal.config import load_config
from rlbal.controllers.records import Allocation
from rlbal.data.records import PromptBatch
from rlbal.logging import (
    MetricsLogger,
    read_metrics,
    samples_markdown,
    step_completions,
    truncate_metrics,
    wandb_settings,
)
from rlbal.rollout.engine import Completion, GenerationResult
from rlbal.run import end_summary
from rlbal.step import Round


def make_round(ids: list[int], bins: list[int], counts: list[int], correct: list[bool]) -> Round:
    """Prompts `ids`, `counts[i]` completions each (text 'c<id>.<j>'), correctness per completion in order."""
    k = len(ids)
    prompts = PromptBatch(
        indices=np.array(ids, dtype=np.int64),
        keys=[f"k{i}" for i in ids],
        prompt_token_ids=[[1, 2]] * k,
        texts=[f"p{i}" for i in ids],
        answers=["1"] * k,
        metas=[{}] * k,
        difficulty=np.full(k, np.nan),
    )
    comps = [
        Completion(prompt_index=p, token_ids=[3], logprobs=[-0.1], text=f"c{ids[p]}.{j}", finish_reason="stop")
        for p in range(k)
        for j in range(counts[p])
    ]
    ok = np.array(correct, dtype=bool)
    scores = ScoreBatch(
        scores=ok.astype(np.float64),
        outcomes=["correct" if c else "wrong" for c in ok],
        correct=ok,
        reasons=[""] * len(ok),
        counts={"correct": int(ok.sum()), "wrong": int((~ok).sum())},
        seconds=0.0,
    )
    alloc = Allocation(
        np.array(ids, dtype=np.int64), np.array(bins, dtype=np.int64), np.ones(k), np.array(counts, dtype=np.int64)
    )
    return Round(prompts, alloc, GenerationResult(comps, prompts.prompt_token_ids), scores)


ROUNDS = [
    make_round([10, 11, 12], [0, 2, 1], [2, 3, 2], [True, False, False, True, True, False, False]),
    make_round([13, 14], [1, 1], [2, 2], [True, True, False, False]),
]


def test_step_completions_records_every_prompt_and_evenly_spaced_samples():
    rec = step_completions(ROUNDS, k=3)
    assert (rec["prompt_id"], rec["bin"], rec["n"]) == ([10, 11, 12, 13, 14], [0, 2, 1, 1, 1], [2, 3, 2, 2, 2])
    # 5 prompts, k = 3: positions round(0), round(2), round(4) = prompts 10, 12 (round 1) and 14 (round 2)
    assert rec["samples"] == [
        {
            "prompt_id": 10,
            "bin": 0,
            "n": 2,
            "prompt": "p10",
            "completion": "c10.0",
            "reward": 1.0,
            "outcome": "correct",
            "group_correct": 1,
        },
        {
            "prompt_id": 12,
            "bin": 1,
            "n": 2,
            "prompt": "p12",
            "completion": "c12.0",
            "reward": 0.0,
            "outcome": "wrong",
            "group_correct": 0,
        },
        {
            "prompt_id": 14,
            "bin": 1,
            "n": 2,
            "prompt": "p14",
            "completion": "c14.0",
            "reward": 0.0,
            "outcome": "wrong",
            "group_correct": 0,
        },
    ]
    assert step_completions(ROUNDS, k=0)["samples"] == []
    assert [s["prompt_id"] for s in step_completions(ROUNDS, k=9)["samples"]] == [10, 11, 12, 13, 14]
    assert step_completions(ROUNDS[:1], k=1)["samples"][0]["prompt_id"] == 10


def test_logger_writes_completions_tensorboard_text_and_truncates_on_resume(tmp_path):
    cfg = load_config(None, ["run.name=log", f"run.output_dir={tmp_path}", "logging.completions_per_step=2"])
    logger = MetricsLogger.from_config(cfg, tmp_path / "log")
    for step in (1, 2, 3):
        logger.log_completions(step, ROUNDS)
        logger.log(step, {"reward/mean": 0.1 * step, "timing/step": 1.0})
    logger.close()
    run = tmp_path / "log"
    lines = read_metrics(run, "completions.jsonl")
    assert [r["step"] for r in lines] == [1, 2, 3] and [s["prompt_id"] for s in lines[0]["samples"]] == [10, 14]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tb")).Reload()
    assert {"config/text_summary", "completions/text_summary"} <= set(events.Tags()["tensors"])
    config_text = events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "    run:\n      name: log\n" in config_text
    table = events.Tensors("completions/text_summary")[-1].tensor_proto.string_val[0].decode()
    assert table.splitlines()[:3] == [
        "| prompt_id | bin | n | prompt | completion | reward | outcome | group_correct |",
        "|---|---|---|---|---|---|---|---|",
        "| 10 | 0 | 2 | p10 | c10.0 | 1.0 | correct | 1 |",
    ]
    truncate_metrics(run, after_step=2)
    assert [r["step"] for r in read_metrics(run, "completions.jsonl")] == [1, 2]
    assert [r["step"] for r in read_metrics(run)] == [1, 2]


def test_samples_markdown_escapes_cells():
    assert samples_markdown([{"a": "x|y", "b": "1\n2"}]).splitlines()[2] == "| x\\|y | 1⏎2 |"


def test_wandb_settings_come_from_the_config(tmp_path):
    cfg = load_config(
        None,
        [
            "logging.wandb=online",
            "logging.wandb_project=p",
            "logging.wandb_entity=team",
            "logging.wandb_tags=[a, b]",
            "logging.wandb_name=trial-3",
            f"run.output_dir={tmp_path}",
        ],
    )
    assert wandb_settings(cfg) == {
        "mode": "online",
        "project": "p",
        "entity": "team",
        "name": "trial-3",
        "tags": ["a", "b"],
    }
    assert wandb_settings(load_config(None, [])) is None
    try:
        import wandb  # noqa: F401
    except ImportError:  # the optional extra is not installed: the run stops with the install command
        with pytest.raises(
            RuntimeError,
            match=r"^logging.wandb is set but the `wandb` package is not installed: "
            r"pip install 'rlbal\[wandb\]'$",
        ):
            MetricsLogger.from_config(cfg, tmp_path / "w")


def test_end_summary_names_every_output(tmp_path):
    cfg = load_config(None, [f"run.output_dir={tmp_path}", "run.name=s", "eval.k=4"])
    run = tmp_path / "s"
    (run / "checkpoints" / "step_4").mkdir(parents=True)
    (run / "checkpoints" / "step_4" / "COMPLETE").write_text("")
    (run / "tb").mkdir()
    rows = [{"step": 0, "eval/mean@4": 0.2, "eval/level_1/mean@4": 0.3, "eval/n_prompts": 8.0}]
    rows += [
        {"step": s, "reward/mean": r, "timing/step": t}
        for s, r, t in ((1, 0.1, 3.0), (2, 0.2, 1.0), (3, 0.4, 2.0), (4, 0.6, 5.0))
    ]
    rows += [{"step": 4, "eval/mean@4": 0.25, "eval/level_1/mean@4": 0.5, "eval/n_prompts": 8.0}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run / "config.yaml").write_text("")
    text = end_summary(
        cfg, run, wall_s=125.0, plots=[run / "plots" / "summary.png", run / "plots" / "a.png"], recipe="recipes/x.yaml"
    )
    # median s/step of [3, 1, 2, 5] (upper middle) = 3.00;
    # reward: first 2 steps (0.1 + 0.2) / 2 -> last 2 (0.4 + 0.6) / 2
    assert text.splitlines()[:9] == [
        "[rlbal] done: 4 steps in 2m05s (3.00 s/step median)",
        "  train reward      0.150 (the first 2 steps) -> 0.500 (the last 2)",
        "  held-out mean@4 (8 prompts x 4 samples, T=0.6):",
        "    step  mean@4  level_1",
        "       0   0.200    0.300",
        "       4   0.250    0.500",
        f"  checkpoints       {run}/checkpoints/ (step_4)",
        f"  logs              {run}/ (metrics.jsonl, config.yaml)",
        f"  plots             {run}/plots/summary.png (+ 1 more)",
    ]
    assert f"  tensorboard       tensorboard --logdir {run}/tb" in text
    assert f"  next              rlbal eval {run} --k 8   # pass@1..8 of the newest checkpoint" in text
    from rlbal.cli import COMMANDS

    compare = "rlbal compare recipes/x.yaml --methods grpo,gdro --seeds 1,2,3   # GDRO vs GRPO over seeds"
    assert (compare in text) == ("compare" in COMMANDS)  # suggested only where the command exists
