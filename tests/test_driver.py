"""The training loop's composition on the real tiny model: what the controllers observe under online filtering,
Prompt-GDRO's sampling form drawing the prompts, and the post-sync logprob check."""

from __future__ import annotations

import numpy as np
import pytest

from rlbal.assemble import build_parts
from rlbal.config import load_config
from rlbal.driver import LoopState, SyncCheckError, train_loop

pytestmark = pytest.mark.slow


def tiny(tmp_path, *extra: str):
    return load_config(
        None,
        [
            "rollout.engine=hf",
            "model.path=tiny-sft",
            "train.prompts_per_step=8",
            "rollout.max_new_tokens=16",
            "data.size=40",
            "eval.size=1",
            "eval.every=0",
            "reward.workers=1",
            "logging.progress=false",
            "logging.tensorboard=false",
            "logging.plots=false",
            f"run.output_dir={tmp_path}",
            "run.name=t",
            *extra,
        ],
    )


def run(cfg, tmp_path, steps: int, patch=None):
    parts = build_parts(cfg, tmp_path / "t")
    parts.evaluator = None
    if patch is not None:
        patch(parts)
    parts.open_logger(start_step=0)
    rows = []
    log = parts.logger.log
    parts.logger.log = lambda step, m: (rows.append(dict(m)), log(step, m))
    try:
        train_loop(
            cfg.model_copy(update={"run": cfg.run.model_copy(update={"max_steps": steps})}),
            parts,
            LoopState(),
            save=lambda s: None,
            evaluate=lambda s: {},
        )
    finally:
        parts.close()
    return parts, rows


def test_filtered_groups_are_observed_by_the_classifier_and_rollout_gdro(tmp_path):
    # a [0.3, 0.7] band drops most groups of the tiny model; every generated group must enter the history
    cfg = tiny(
        tmp_path,
        "rollout.n=4",
        "controllers.filter={low: 0.3, high: 0.7, max_rounds: 4, on_exhausted: partial}",
        "controllers.rollout={}",
        "controllers.classifier={num_bins: 5}",
    )
    parts, rows = run(cfg, tmp_path, 2)
    generated = sum(r["rollout/generated_prompts"] for r in rows)
    trained = sum(r["rollout/num_prompts"] for r in rows)
    assert generated > trained  # the filter did drop groups
    clf = parts.controllers.classifier
    est = clf.estimate(np.arange(len(parts.source.dataset)))
    # every prompt drawn entered the history (the 120-prompt pool was drawn more than once over), not just the
    # few trained ones
    assert clf.num_tracked == np.count_nonzero(~np.isnan(est)) == min(len(parts.source.dataset), generated) > trained
    assert np.nanmin(est) < 0.3 or np.nanmax(est) > 0.7  # dropped (too hard / too easy) groups are in there
    for r in rows:
        assert 0.0 <= r["rollout/informative_frac"] <= 1.0 and r["rollout/generated"] >= r["rollout/num_sequences"]


def test_sampling_realisation_draws_the_steps_prompts_from_the_controllers(tmp_path):
    cfg = tiny(
        tmp_path,
        "controllers.prompt_gdro={realise: sampling}",
        "controllers.classifier={num_bins: 3, unseen: separate}",
    )
    drawn = []

    def spy(parts):
        sample = parts.controllers.sample
        parts.source.draw = lambda k: drawn.append(sample(k)) or drawn[-1]

    parts, rows = run(cfg, tmp_path, 2, patch=spy)
    assert len(drawn) == 2 and all(d.size == 8 for d in drawn)
    sizes = parts.controllers.sampler.sizes()
    assert sizes.sum() == len(parts.source.dataset) and sizes[-1] <= len(parts.source.dataset) - 8  # observed moved
    assert rows[-1]["controller/sampler/drawn_share/unseen"] <= 1.0
    with pytest.raises(Exception, match="realise=sampling needs controllers.classifier.unseen=separate"):
        tiny(tmp_path, "controllers.prompt_gdro={realise: sampling}")


def test_post_sync_check_passes_a_real_sync_and_stops_a_sync_that_does_nothing(tmp_path):
    cfg = tiny(tmp_path, "rollout.sync_check_every=1", "learner.lr=0.01")
    _, rows = run(cfg, tmp_path, 2)
    assert all(r["sync/logprob_gap"] < 1e-3 for r in rows)  # fp32 engine and learner agree after a real sync

    def no_sync(parts):
        parts.engine.update_weights = lambda *a, **k: 0.0  # a sync that silently does nothing

    with pytest.raises(SyncCheckError, match="after the weight sync of step [12] the engine's logprobs differ"):
        run(cfg, tmp_path, 2, patch=no_sync)


def test_a_checkpoint_is_written_after_its_steps_metrics_row(tmp_path):
    """A run killed between the two must not lose the row of a step it can resume from: when `save` runs, the
    step's row is already in metrics.jsonl (a run killed before the checkpoint completes resumes from the
    previous one, and rlbal.run drops the rows after it)."""
    import json

    cfg = tiny(tmp_path, "checkpoint.every=2")
    parts = build_parts(cfg, tmp_path / "t")
    parts.evaluator = None
    parts.open_logger(start_step=0)
    seen = {}

    def save(state):
        lines = (tmp_path / "t" / "metrics.jsonl").read_text().splitlines()
        seen[state.step] = [json.loads(line)["step"] for line in lines]

    try:
        train_loop(
            cfg.model_copy(update={"run": cfg.run.model_copy(update={"max_steps": 4})}),
            parts,
            LoopState(),
            save=save,
            evaluate=lambda s: {},
        )
    finally:
        parts.close()
    assert seen == {2: [1, 2], 4: [1, 2, 3, 4]}
