"""The recipe tree: every recipe validates; bad recipes and overrides fail fast with one line naming the key."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from rlbal.config import Config, ConfigError, explain, load_config, save_resolved

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.stem for p in RECIPES])
def test_every_recipe_validates(recipe):
    cfg = load_config(recipe)
    assert isinstance(cfg, Config)
    first = recipe.read_text().splitlines()[0]
    assert first.startswith("#"), f"{recipe.name} must start with a comment giving the launch command"


def test_recipes_exist():
    names = {p.stem for p in RECIPES}
    assert {"quickstart", "grpo", "gdro", "prompt_gdro", "rollout_gdro", "bapo", "dapo", "odf"} <= names


def test_defaults_and_overrides_apply_in_order(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("algo: {clip_high: 0.3}\nrun: {seed: 3}\n")
    cfg = load_config(recipe, ["run.seed=7", 'rollout.stop=["\\n\\n"]', "algo.adv_clip=5", "learner.lr=3e-5"])
    assert cfg.algo.clip_high == 0.3  # from the recipe
    assert cfg.run.seed == 7  # override beats recipe
    assert cfg.rollout.stop == ("\n\n",)
    assert cfg.algo.adv_clip == 5.0
    assert cfg.learner.lr == 3e-5  # scientific notation is a float (plain YAML 1.1 would keep a string)
    assert cfg.algo.clip_low == 0.2  # default untouched


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(None, ["controllers.prompt_gdro={}", "run.max_steps=3"])
    path = save_resolved(cfg, tmp_path)
    again = Config.model_validate(yaml.safe_load(path.read_text()))
    assert again == cfg


def test_explain_lists_documented_keys():
    lines = explain()
    assert any(line.strip().startswith("algo.clip_high = 0.28  # Upper clip") for line in lines)
    assert any("controllers.prompt_gdro" in line for line in lines)


# (overrides, exact error). Each row is one way a user gets a recipe wrong.
BAD = [
    (["algo.clip_hihg=0.3"], "unknown key 'algo.clip_hihg' (did you mean 'algo.clip_high'?)"),  # typo of a leaf
    (["algorithm.loss=grpo"], "unknown key 'algorithm' (did you mean 'algo'?)"),  # typo of a section
    (["rollout.n=0"], "rollout.n: Input should be greater than or equal to 1 (got 0)"),  # out of range
    (["rollout.n=four"], "rollout.n: Input should be a valid integer, unable to parse string as an integer (got 'four')"),
    (["algo.loss=ppo"], "algo.loss: Input should be 'ppo_clip', 'dual_clip', 'gspo' or 'bapo' (got 'ppo')"),  # closed set
    (["algo.clip_low=1.5"], "algo.clip_low: Input should be less than 1 (got 1.5)"),
    (["learner.lr=-1e-5"], "learner.lr: Input should be greater than 0 (got -1e-05)"),
    (["rollout.top_p=0"], "rollout.top_p: Input should be greater than 0 (got 0)"),
    (["rollout.engine=sglang"], "rollout.engine: Input should be 'vllm' or 'hf' (got 'sglang')"),
    (["run.orchestrator=slurm"], "run.orchestrator: Input should be 'local' or 'ray' (got 'slurm')"),
    (["algo.loss=bapo"], "algo.loss=bapo needs controllers.bapo (the adaptive clip search settings); add `controllers: {bapo: {}}`"),
    (["controllers.bapo={}"], "controllers.bapo is set but algo.loss='ppo_clip'; set algo.loss=bapo or remove controllers.bapo"),
    (["data.source=files"], "data.source=files needs data.paths (one or more local files or dataset folders)"),
    (["eval.source=files"], "eval.source=files needs eval.paths"),
    (["model.dtype=float16"], "model.dtype: Input should be 'float32' or 'bfloat16' (got 'float16')"),
    (["reward.timeout_s=0"], "reward.timeout_s: Input should be greater than 0 (got 0)"),
    (["learner.betas=[0.9]"], "learner.betas.1: Field required (got [0.9])"),
    (["run.max_steps"], "override 'run.max_steps' is not of the form key.sub=value"),
    (["run..seed=1"], "override 'run..seed=1' is not of the form key.sub=value"),
    (["run.seed.x=1"], "'run.seed' is a value, not a section (got {'x': 1})"),
    (["ray.async_steps=2"], "ray.async_steps: Input should be less than or equal to 1 (got 2)"),
    (["checkpoint.keep_last=0"], "checkpoint.keep_last: Input should be greater than or equal to 1 (got 0)"),
    (["data.too_long=truncate"], "data.too_long: Input should be 'error' or 'drop' (got 'truncate')"),
]


@pytest.mark.parametrize("overrides,message", BAD, ids=[b[0][0] for b in BAD])
def test_bad_config_fails_with_exact_message(overrides, message):
    with pytest.raises(ConfigError) as info:
        load_config(None, overrides)
    assert str(info.value) == message


BAD_FILES = [
    ("- a\n- b\n", "a recipe must be a mapping of sections, got list"),
    ("algo: {clip_high: [\n", "not valid YAML"),
    ("run: 3\n", "run: Input should be a valid dictionary or instance of RunConfig (got 3)"),
]


@pytest.mark.parametrize("text,message", BAD_FILES)
def test_bad_recipe_file(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert message in str(info.value)


def test_missing_recipe():
    with pytest.raises(ConfigError, match="recipe not found: nope.yaml"):
        load_config("nope.yaml")


def test_cli_typo_fails_fast_with_suggestion(tmp_path):
    recipe = tmp_path / "typo.yaml"
    recipe.write_text("# typo\nrollout: {max_new_tokns: 32}\n")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "rlbal.train", str(recipe)], capture_output=True, text=True, cwd=ROOT)
    elapsed = time.perf_counter() - t0
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "rlbal: config error: unknown key 'rollout.max_new_tokns' (did you mean 'rollout.max_new_tokens'?)"
    )
    assert elapsed < 5.0, f"config errors must come before any heavy import ({elapsed:.1f}s)"


@pytest.mark.parametrize("argv", [["-m", "rlbal.train", "--help"], ["-m", "rlbal.cli", "train", "--help"]])
def test_train_help(argv):
    proc = subprocess.run([sys.executable, *argv], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0
    assert "key.sub=value" in proc.stdout
