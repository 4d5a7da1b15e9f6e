"""rlbal.plot: metrics.jsonl -> step x bin matrices and curves -> PNG files, on synthetic runs with known numbers."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from rlbal.plot import plot_main, plot_run
from rlbal.plot_data import bin_matrix, curve_groups, ema, heatmap_matrix, load_run, run_labels
from rlbal.plot_summary import load_bin_history, migration_counts

BINS = 4
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def count(step: int, b: int) -> float:
    """Prompts the classifier put in bin b at this step; bin 3 is empty at step 4."""
    return 0.0 if (step, b) == (4, 3) else float(step + b)


def train_line(step: int, *, rollout: bool, scale: float = 1.0) -> dict:
    """One training step's metrics with the controllers' per-bin families; values are simple functions of
    (step, bin)."""
    row = {
        "step": step,
        "wall": 2.0 * step,
        "reward/mean": scale * step / 10,
        "rollout/len_mean": 30.0 + step,
        "loss/pg": -0.01 * step,
        "timing/generate": 0.5 + 0.01 * step,
        "controller/classifier/mean_bin": 1.5 + 0.1 * step,
        "controller/prompt_gdro/weight_entropy": np.log(BINS) - 0.05 * step,
        "rollout/per_prompt_max": 8.0,
    }
    for b in range(BINS):  # the controllers' metric names (rlbal/controllers/*.py metrics())
        row[f"controller/classifier/count/bin_{b}"] = count(step, b)
        row[f"controller/prompt_gdro/weight/bin_{b}"] = 1.0 + 0.1 * b * step
        row[f"controller/prompt_gdro/reward_mean/bin_{b}"] = b / BINS
        if rollout:
            row[f"controller/rollout_gdro/n/bin_{b}"] = 2.0 + 2 * b
    if rollout:
        row["controller/rollout_gdro/dual_mu"] = 0.01 * step
    return row


def eval_line(step: int) -> dict:
    """pass@1 equals mean@4 (it is drawn once); rollout/per_prompt_max above is constant (not drawn)."""
    return {
        "step": step,
        "wall": 2.0 * step + 1,
        "eval/pass@4": 0.5 + 0.01 * step,
        "eval/mean@4": 0.3 + 0.01 * step,
        "eval/pass@1": 0.3 + 0.01 * step,
        "eval/greedy/pass@1": 0.25 + 0.02 * step,
        "eval/level_1/pass@4": 0.9 - 0.01 * step,
        "eval/level_1/mean@4": 0.6 + 0.01 * step,
        "eval/level_1/pass@1": 0.6 + 0.01 * step,
        "eval/level_3/pass@4": 0.1 + 0.01 * step,
        "eval/len_mean": 12.0 + step,
        "eval/n_prompts": 96.0,
        "eval/level_1/n_prompts": 32.0,
    }


# Prompt ids and bins per step (completions.jsonl): prompt 5 goes bin 0 -> 1 -> 3, prompt 6 stays in bin 2,
# prompt 7 is drawn once. Migration counts by hand: M[0, 1] = 1, M[1, 3] = 1, M[2, 2] = 2.
BIN_HISTORY = {1: ([5, 6, 7], [0, 2, 1]), 2: ([5, 6], [1, 2]), 4: ([6, 5], [2, 3])}


def write_run(run_dir: Path, *, rollout: bool, scale: float = 1.0) -> Path:
    """Steps 1..6 plus eval lines at 0, 3 and 6; bin 2 of the count is missing at step 3; step 2 is logged twice
    (the second value wins); the run was killed while writing step 7 (truncated last line, no newline)."""
    rows = [eval_line(0)]
    for step in range(1, 7):
        row = train_line(step, rollout=rollout, scale=scale)
        if step == 3:
            del row["controller/classifier/count/bin_2"]
        rows.append(row)
        if step in (3, 6):
            rows.append(eval_line(step))
    relogged = train_line(2, rollout=rollout, scale=scale)
    relogged["controller/classifier/count/bin_1"] = 9.0
    rows.insert(3, relogged)
    run_dir.mkdir(parents=True)
    text = "".join(json.dumps(r) + "\n" for r in rows) + '{"step": 7, "controller/classifier/count/bin_0": 1'
    (run_dir / "metrics.jsonl").write_text(text)
    lines = [
        {"step": s, "prompt_id": ids, "bin": bins, "n": [4] * len(ids), "samples": []}
        for s, (ids, bins) in BIN_HISTORY.items()
    ]
    (run_dir / "completions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"step": 5, "prom')
    return run_dir


@pytest.fixture
def two_runs(tmp_path: Path) -> list[Path]:
    return [write_run(tmp_path / "grpo", rollout=False, scale=0.5), write_run(tmp_path / "rollout_gdro", rollout=True)]


def test_bin_matrix_equals_the_logged_numbers(two_runs):
    run = load_run(two_runs[0])
    m = bin_matrix(run, "controller/classifier/count")
    # Steps with counts logged: 1..6 (eval lines at 0, 3, 6 carry none; step 7 was truncated).
    # count(s, b) = s + b, except: step 2 bin 1 was re-logged as 9, step 3 bin 2 was not logged, step 4 bin 3 is 0.
    expected_SB = np.array([[s + b for b in range(BINS)] for s in range(1, 7)], dtype=float)
    expected_SB[1, 1] = 9.0
    expected_SB[2, 2] = np.nan
    expected_SB[3, 3] = 0.0
    np.testing.assert_array_equal(m.steps_S, np.arange(1, 7))
    np.testing.assert_array_equal(m.bins_B, np.arange(BINS))
    np.testing.assert_allclose(m.values_SB, expected_SB, rtol=0, atol=0)


def test_count_heatmap_draws_shares(two_runs):
    m, label = heatmap_matrix(load_run(two_runs[0]), "controller/classifier/count")
    assert label == "controller/classifier/share (count / step total)"
    # Step 1: counts [1, 2, 3, 4] / 10. Step 2 (re-logged): [2, 9, 4, 5] / 20.
    # Step 3: [3, 4, -, 6] / 13 (the bin not logged is blank). Step 4: [4, 5, 6, 0] / 15 (the empty bin is
    # blank). Steps 5, 6: (s + b) / (4s + 6).
    np.testing.assert_allclose(m.values_SB[0], [0.1, 0.2, 0.3, 0.4])
    np.testing.assert_allclose(m.values_SB[1], [2 / 20, 9 / 20, 4 / 20, 5 / 20])
    np.testing.assert_allclose(m.values_SB[2], [3 / 13, 4 / 13, np.nan, 6 / 13])
    np.testing.assert_allclose(m.values_SB[3], [4 / 15, 5 / 15, 6 / 15, np.nan])
    for row, s in zip(m.values_SB[4:], (5, 6)):
        np.testing.assert_allclose(row, [(s + b) / (4 * s + 6) for b in range(BINS)])
    np.testing.assert_allclose(np.nansum(m.values_SB, axis=1), 1.0)


def test_empty_bins_are_blank_except_controller_state(two_runs):
    run = load_run(two_runs[1])
    # Bin 3 held no prompt at step 4 (row 3): the reward and rollouts per bin there are blank, not 0 ...
    for family in ("controller/prompt_gdro/reward_mean", "controller/rollout_gdro/n"):
        m, _ = heatmap_matrix(run, family)
        assert np.isnan(m.values_SB[3, 3]), family
        assert np.isfinite(np.delete(m.values_SB.ravel(), 3 * BINS + 3)).all(), family
    # ... while the adversary's weight of bin 3 is state, defined whether or not the bin was drawn.
    m, _ = heatmap_matrix(run, "controller/prompt_gdro/weight")
    assert m.values_SB[3, 3] == pytest.approx(1.0 + 0.1 * 3 * 4)


def test_migration_matrix_counts_consecutive_appearances(two_runs):
    history = load_bin_history(two_runs[0])  # the truncated last line is skipped
    assert [h[0] for h in history] == [1, 2, 4]
    expected = np.zeros((BINS, BINS), dtype=np.int64)
    expected[0, 1] = expected[1, 3] = 1  # prompt 5: 0 -> 1 -> 3
    expected[2, 2] = 2  # prompt 6 stays in bin 2 twice; prompt 7 appears once
    np.testing.assert_array_equal(migration_counts(history, num_bins=BINS), expected)
    np.testing.assert_array_equal(migration_counts([], num_bins=2), np.zeros((2, 2), dtype=np.int64))


def test_load_run_merges_train_and_eval_lines_per_step(two_runs):
    run = load_run(two_runs[1])
    np.testing.assert_array_equal(run.steps_S, np.arange(0, 7))  # eval-only step 0, truncated step 7 dropped
    x_P, y_P = run.series("eval/pass@4")
    np.testing.assert_array_equal(x_P, [0, 3, 6])
    np.testing.assert_allclose(y_P, [0.50, 0.53, 0.56])
    # Step 3 has a training line (wall 6) then an eval line (wall 7): the later one is kept.
    x_P, y_P = run.series("reward/mean", x="wall")
    np.testing.assert_allclose(x_P, [2, 4, 7, 8, 10, 13])
    np.testing.assert_allclose(y_P, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6])


def test_plot_run_writes_every_figure_as_a_real_png(two_runs, tmp_path):
    out = tmp_path / "cmp"
    written = plot_run(two_runs, out)
    expected = {
        "summary.png",
        "migration.png",
        "heatmap_controller_classifier_share.png",
        "heatmap_controller_prompt_gdro_weight.png",
        "heatmap_controller_prompt_gdro_reward_mean.png",
        "heatmap_controller_rollout_gdro_n.png",
        "curves_controller_classifier.png",
        "curves_controller_prompt_gdro.png",
        "curves_controller_rollout_gdro.png",
        "curves_eval.png",
        "curves_eval_details.png",
        "curves_eval_level_1.png",
        "curves_eval_level_3.png",
        "curves_loss.png",
        "curves_reward.png",
        "curves_rollout.png",
        "curves_timing.png",
    }
    assert written[0].name == "summary.png"
    assert {p.name for p in written} == expected
    assert {p.name for p in out.iterdir()} == expected
    import matplotlib.image

    for path in written:
        data = path.read_bytes()
        assert data[:8] == PNG_MAGIC, path.name
        assert len(data) > 8_000, (path.name, len(data))
        pixels = matplotlib.image.imread(path)
        assert pixels.shape[0] > 200 and pixels.shape[1] > 400, (path.name, pixels.shape)
        assert pixels[..., :3].std() > 0.05, path.name  # something was drawn, not a blank canvas


def test_absent_diagnostics_are_skipped_and_logged(tmp_path, caplog):
    run = tmp_path / "plain"
    run.mkdir()
    (run / "metrics.jsonl").write_text(
        '{"step": 1, "wall": 1.0, "reward/mean": 0.25}\n{"step": 2, "wall": 2.0, "reward/mean": 0.5}\n'
    )
    with caplog.at_level(logging.INFO, logger="rlbal.plot"):
        written = plot_run([run])
    # default out: the (first) run's plots/; the summary page notes what the run did not log
    assert written == [run / "plots" / "summary.png", run / "plots" / "curves_reward.png"]
    assert "no adversarial weight per bin" in caplog.text
    assert "no rollout allocation per bin" in caplog.text
    assert "no reward curve" not in caplog.text


def test_runs_without_complete_lines_do_not_crash(tmp_path, caplog):
    killed = tmp_path / "killed"
    killed.mkdir()
    (killed / "metrics.jsonl").write_text('{"step": 1, "reward/me')
    empty = tmp_path / "empty"
    empty.mkdir()
    with caplog.at_level(logging.WARNING, logger="rlbal.plot"):
        assert plot_run([killed, empty]) == []
    assert "run killed has no metrics" in caplog.text and "run empty has no metrics" in caplog.text


def test_curve_groups_split_controllers_and_eval_levels(two_runs):
    groups = curve_groups([load_run(d) for d in two_runs])
    # pass@1 equals mean@4: drawn once (greedy pass@1 is another number)
    assert groups["eval"] == ["eval/greedy/pass@1", "eval/mean@4", "eval/pass@4"]
    assert groups["eval_details"] == ["eval/len_mean"]  # prompt counts are not plotted
    assert groups["eval/level_1"] == ["eval/level_1/mean@4", "eval/level_1/pass@4"]
    assert groups["controller/rollout_gdro"] == ["controller/rollout_gdro/dual_mu"]  # only the second run has it
    assert groups["controller/classifier"] == ["controller/classifier/mean_bin"]  # per-bin families are heatmaps


def test_ema_matches_the_recurrence():
    y = np.array([1.0, 3.0, 2.0, 6.0])
    w = 0.5
    # s = [0.5, 0.25+1.5, 0.875+1, 0.9375+3] = [0.5, 1.75, 1.875, 3.9375];
    # debiased by 1 - w^(t+1) = [.5, .75, .875, .9375]
    np.testing.assert_allclose(ema(y, w), [1.0, 1.75 / 0.75, 1.875 / 0.875, 3.9375 / 0.9375])
    np.testing.assert_array_equal(ema(y, 0.0), y)
    with pytest.raises(ValueError, match="smooth must be in"):
        ema(y, 1.0)


def test_run_labels_disambiguate_equal_folder_names(tmp_path):
    assert run_labels([tmp_path / "a", tmp_path / "b"]) == ["a", "b"]
    assert run_labels([tmp_path / "x" / "seed0", tmp_path / "y" / "seed0"]) == ["x/seed0", "y/seed0"]


def test_plot_main_exit_codes(two_runs, tmp_path, capsys):
    assert plot_main([str(two_runs[0]), "--out", str(tmp_path / "o"), "--smooth", "0.5", "--x", "wall"]) == 0
    assert len(list((tmp_path / "o").glob("*.png"))) == 15  # no rollout alloc heatmap, no rollout curves
    assert plot_main([str(tmp_path / "nope")]) == 2
    assert "not a directory" in capsys.readouterr().err
    assert plot_main([str(two_runs[0]), "--smooth", "1.5"]) == 2
    with pytest.raises(SystemExit) as exc:
        plot_main(["--help"])
    assert exc.value.code == 0
