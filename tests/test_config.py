"""The recipe tree: every recipe validates; bad recipes and overrides fail fast with one line naming the key."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import time
import typing
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from rlbal.config import Config, ConfigError, Registered, explain, load_config, save_resolved

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


def _leaf_keys(tree: dict, prefix: str = "") -> set[str]:
    out = set()
    for key, value in tree.items():
        out |= _leaf_keys(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}"}
    return out


EXPLAIN_LINE = re.compile(
    r"^  (?P<key>[\w.]+) = (?P<value>.*?)(  \[(?P<choices>[^\]]*)\])?(  \(default (?P<default>.*)\))?"
    r"  # (?P<doc>.*)$"
)


def _explain_cli(*args: str) -> dict[str, re.Match]:
    proc = subprocess.run(
        [sys.executable, "-m", "rlbal.cli", "train", *args, "--explain"], capture_output=True, text=True, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr
    leaves = [line for line in proc.stdout.splitlines() if line.startswith("  ")]
    matches = {m["key"]: m for line in leaves if (m := EXPLAIN_LINE.match(line))}
    assert len(matches) == len(leaves), [line for line in leaves if not EXPLAIN_LINE.match(line)][:3]
    return matches


def _literal_fields() -> dict[str, tuple]:
    """Dotted key -> allowed values of every Literal field, from the annotations (pydantic and dataclass), and of
    every registry-backed string (`Registered`)."""
    out = {}

    def walk(model, prefix):
        if issubclass(model, BaseModel):
            fields = {k: f.annotation for k, f in model.model_fields.items()}
            registered = {k: m for k, f in model.model_fields.items() for m in f.metadata if isinstance(m, Registered)}
        else:
            fields, registered = typing.get_type_hints(model), {}
        for name, ann in fields.items():
            args = [a for a in typing.get_args(ann) if a is not type(None)] or [ann]
            sub = next(
                (a for a in args if isinstance(a, type) and (issubclass(a, BaseModel) or dataclasses.is_dataclass(a))),
                None,
            )
            if name in registered:
                out[f"{prefix}{name}"] = tuple(registered[name].names())
            elif sub is not None:
                walk(sub, f"{prefix}{name}.")
            elif typing.get_origin(ann) is typing.Literal:
                out[f"{prefix}{name}"] = typing.get_args(ann)
            elif any(typing.get_origin(a) is typing.Literal for a in args):
                out[f"{prefix}{name}"] = typing.get_args(
                    next(a for a in args if typing.get_origin(a) is typing.Literal)
                )

    walk(Config, "")
    return out


def test_explain_documents_every_key_and_lists_choices():
    lines = _explain_cli()
    # Every leaf of a config with every optional section on, no more and no less, with documentation.
    full = load_config(
        None,
        [
            "algo.loss=bapo",
            "controllers.bapo={}",
            "controllers.prompt_gdro={}",
            "controllers.rollout={}",
            "controllers.filter={}",
        ],
    )
    assert set(lines) == _leaf_keys(full.to_dict())
    assert [k for k, m in lines.items() if len(m["doc"].strip()) < 10] == []
    choices = _literal_fields()
    assert len(choices) >= 21 and "controllers.rollout.allocator" in choices and "logging.wandb" in choices
    for key, m in lines.items():
        assert m["choices"] == (" | ".join(map(str, choices[key])) if key in choices else None), key
    assert lines["rollout.engine"]["choices"] == "vllm | hf"
    assert lines["algo.loss"]["choices"] == "ppo_clip | dual_clip | gspo | bapo"
    assert lines["controllers.classifier.unseen"]["choices"] == "hardest | separate"
    assert lines["controllers.rollout.n_bar"]["doc"].startswith("Budget: mean rollouts per prompt")
    assert lines["run.max_steps"]["value"] == "20" and lines["run.max_steps"]["default"] is None


REGISTRIES = [
    ("algo.loss", "POLICY_LOSSES"),
    ("algo.advantage", "ADVANTAGES"),
    ("algo.aggregation", "AGGREGATIONS"),
    ("algo.kl_estimator", "KL_ESTIMATORS"),
    ("algo.is_correction", "IS_MODES"),
]


@pytest.mark.parametrize("key,registry", REGISTRIES, ids=[k for k, _ in REGISTRIES])
def test_config_choices_are_the_algorithm_registries_names(key, registry):
    """The config lists rlbal.algo's names as Literals (the config imports no torch): they must be the registry's."""
    import rlbal.algo

    assert sorted(_literal_fields()[key]) == list(getattr(rlbal.algo, registry).names())


def test_an_engine_registered_before_loading_is_a_valid_rollout_engine(monkeypatch):
    from rlbal.assemble import engine_options
    from rlbal.registry import Registry
    from rlbal.rollout import factory

    engines = Registry("engine kind")
    for name in factory.ENGINES:
        engines.add(name, factory.ENGINES.get(name))
    monkeypatch.setattr(factory, "ENGINES", engines)  # this test's registration stays in this test
    factory.register_engine("fake", lambda path, **kw: None, options=("enforce_eager",))
    cfg = load_config(None, ["rollout.engine=fake"])
    assert cfg.rollout.engine == "fake" and _literal_fields()["rollout.engine"] == ("vllm", "hf", "fake")
    assert set(engine_options(cfg)) == {"dtype", "seed", "max_model_len", "enforce_eager"}
    with pytest.raises(ConfigError, match=r"^rollout.engine: Input should be 'vllm', 'hf' or 'fake' \(got 'x'\)$"):
        load_config(None, ["rollout.engine=x"])


def test_reward_fn_documentation_names_every_builtin_reward():
    from reward.registry import REWARDS
    from rlbal.config import RewardConfig

    doc = RewardConfig.model_fields["fn"].description
    assert [name for name in REWARDS if f"'{name}'" not in doc] == []


def test_explain_shows_the_recipes_values():
    lines = _explain_cli("recipes/quickstart.yaml", "rollout.n=6")
    assert (lines["run.max_steps"]["value"], lines["run.max_steps"]["default"]) == ("150", "20")
    assert (lines["rollout.n"]["value"], lines["rollout.n"]["default"]) == ("6", "4")
    assert (lines["controllers.rollout.n_bar"]["value"], lines["controllers.rollout.n_bar"]["default"]) == (
        "6.0",
        "4.0",
    )
    assert (lines["data.levels"]["value"], lines["data.levels"]["default"]) == ("[1, 2]", "[1, 2, 3]")
    assert lines["run.seed"]["default"] is None  # unchanged values show no default
    text = "\n".join(explain(load_config(ROOT / "recipes/quickstart.yaml")))
    assert "controllers.filter:  (optional section: off; `controllers.filter: {}` turns it on)" in text
    assert "controllers.prompt_gdro:  (optional section: on)" in text


def test_rollout_n_alone_sets_the_rollout_gdro_budget():
    assert load_config(ROOT / "recipes/quickstart.yaml").controllers.rollout.n_bar == 8.0
    cfg = load_config(ROOT / "recipes/quickstart.yaml", ["rollout.n=6"])
    assert (cfg.rollout.n, cfg.controllers.rollout.n_bar) == (6, 6.0)
    assert load_config(None, ["controllers.rollout={}"]).controllers.rollout.n_bar == 4.0  # default rollout.n
    cfg = load_config(None, ["controllers.rollout={n_max: 16}", "rollout.n=16"])
    assert cfg.controllers.rollout.n_bar == 16.0
    assert load_config(None, ["controllers.rollout={n_bar: 6}", "rollout.n=6"]).controllers.rollout.n_bar == 6.0


def test_cli_version():
    proc = subprocess.run([sys.executable, "-m", "rlbal.cli", "--version"], capture_output=True, text=True, cwd=ROOT)
    assert (proc.returncode, proc.stdout) == (0, f"rlbal {metadata.version('rlbal')}\n")


# (overrides, exact error). Each row is one way a user gets a recipe wrong.
BAD = [
    (["algo.clip_hihg=0.3"], "unknown key 'algo.clip_hihg' (did you mean 'algo.clip_high'?)"),  # typo of a leaf
    (["algorithm.loss=grpo"], "unknown key 'algorithm' (did you mean 'algo'?)"),  # typo of a section
    (["rollout.n=0"], "rollout.n: Input should be greater than or equal to 1 (got 0)"),  # out of range
    (
        ["rollout.n=four"],
        "rollout.n: Input should be a valid integer, unable to parse string as an integer (got 'four')",
    ),
    (
        ["algo.loss=ppo"],
        "algo.loss: Input should be 'ppo_clip', 'dual_clip', 'gspo' or 'bapo' (got 'ppo')",
    ),  # closed set
    (["algo.clip_low=1.5"], "algo.clip_low: Input should be less than 1 (got 1.5)"),
    (["learner.lr=-1e-5"], "learner.lr: Input should be greater than 0 (got -1e-05)"),
    (["rollout.top_p=0"], "rollout.top_p: Input should be greater than 0 (got 0)"),
    (["rollout.engine=sglang"], "rollout.engine: Input should be 'vllm' or 'hf' (got 'sglang')"),
    (["run.orchestrator=slurm"], "run.orchestrator: Input should be 'local' or 'ray' (got 'slurm')"),
    (
        ["algo.loss=bapo"],
        "algo.loss=bapo needs controllers.bapo (the adaptive clip search settings); add `controllers: {bapo: {}}`",
    ),
    (
        ["controllers.bapo={}"],
        "controllers.bapo is set but algo.loss='ppo_clip'; set algo.loss=bapo or remove controllers.bapo",
    ),
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
    (
        ["controllers.rollout={n_bar: 6}"],
        "controllers.rollout.n_bar=6 differs from rollout.n=4: both are the mean "
        "rollouts per prompt; set only rollout.n (n_bar follows it) or set them equal",
    ),
    (
        ["controllers.rollout={}", "rollout.n=16"],
        "rollout.n=16 is outside controllers.rollout.n_min..n_max = 2..12 "
        "(Rollout-GDRO's mean budget n_bar follows rollout.n); widen n_min / n_max",
    ),
    (
        ["learner.share_prompt_forward=true", "model.gradient_checkpointing=true"],
        "learner.share_prompt_forward=true needs model.gradient_checkpointing=false (transformers turns the "
        "key/value cache off under gradient checkpointing); set learner.share_prompt_forward=null or false",
    ),
    (
        ["learner.micro_batch_overhead_tokens=-1"],
        "learner.micro_batch_overhead_tokens: Input should be greater than or equal to 0 (got -1)",
    ),
    (
        ["data.difficulty_levels=[easy,easy]"],
        "data.difficulty_levels: levels must be distinct, non-empty strings (got ['easy', 'easy'])",
    ),
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
