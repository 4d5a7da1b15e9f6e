"""The typed recipe tree: every knob of a run, documented once, validated before anything heavy loads.

The sections (run, model, data, ..., ray) and their fields with defaults and documentation are in
`rlbal.config_sections`, re-exported here; this module composes them into `Config`, checks the rules that span
sections, and loads recipes. A recipe is a YAML file that overrides only what differs from the defaults;
`key.sub=value` arguments override it further. Errors are one line naming the key:

    >>> load_config(overrides=["algo.clip_hihg=0.3"])
    Traceback (most recent call last):
    ...
    rlbal.config.ConfigError: unknown key 'algo.clip_hihg' (did you mean 'algo.clip_high'?)

`python -m rlbal.config` (or `rlbal train --explain`) prints every field with its documentation.
"""

from __future__ import annotations

import difflib
import json
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError, model_validator

from rlbal.config_sections import (  # noqa: F401  (re-exported: the sections are part of this module's API)
    AlgoConfig,
    CheckpointConfig,
    ControllersConfig,
    DataConfig,
    EvalConfig,
    LearnerConfig,
    LoggingConfig,
    ModelConfig,
    RayConfig,
    Registered,
    RewardConfig,
    RolloutConfig,
    RunConfig,
    TrainConfig,
    _Section,
)
from rlbal.controllers.rollout_gdro import RolloutGDROConfig
from rlbal.errors import UserError


class ConfigError(UserError, ValueError):
    """A recipe or override that cannot be used; the message names the key."""

    kind = "config"


class Config(_Section):
    run: RunConfig = RunConfig()
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    eval: EvalConfig = EvalConfig()
    rollout: RolloutConfig = RolloutConfig()
    reward: RewardConfig = RewardConfig()
    algo: AlgoConfig = AlgoConfig()
    learner: LearnerConfig = LearnerConfig()
    train: TrainConfig = TrainConfig()
    controllers: ControllersConfig = ControllersConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()
    logging: LoggingConfig = LoggingConfig()
    ray: RayConfig = RayConfig()

    @model_validator(mode="before")
    @classmethod
    def _derived(cls, data: Any) -> Any:
        return _derive_defaults(data)

    @model_validator(mode="after")
    def _combinations(self) -> Config:
        _check_combinations(self)
        return self

    def to_dict(self) -> dict[str, Any]:
        return json.loads(self.model_dump_json())


def _derive_defaults(raw: Any) -> Any:
    """Keys that follow another key unless the recipe sets them: `controllers.rollout.n_bar` (Rollout-GDRO's mean
    budget) is `rollout.n`, so `rollout.n=8` alone changes both. Returns a new dict; the input is not modified."""
    if not isinstance(raw, dict) or not isinstance(raw.get("controllers"), dict):
        return raw
    alloc = raw["controllers"].get("rollout")
    if not isinstance(alloc, dict) or "n_bar" in alloc:
        return raw
    section = raw.get("rollout")
    n = section.get("n") if isinstance(section, dict) else getattr(section, "n", None)
    n = RolloutConfig.model_fields["n"].default if n is None else n
    if isinstance(n, bool) or not isinstance(n, int):
        return raw  # an invalid rollout.n is reported by its own validation
    lo, hi = alloc.get("n_min", RolloutGDROConfig.n_min), alloc.get("n_max", RolloutGDROConfig.n_max)
    if isinstance(lo, int) and isinstance(hi, int) and not lo <= n <= hi:
        raise ValueError(
            f"rollout.n={n} is outside controllers.rollout.n_min..n_max = {lo}..{hi} (Rollout-GDRO's "
            "mean budget n_bar follows rollout.n); widen n_min / n_max"
        )
    return {**raw, "controllers": {**raw["controllers"], "rollout": {**alloc, "n_bar": n}}}


def _check_combinations(cfg: Config) -> None:
    """Cross-field rules; each raises with the keys involved."""
    a, c = cfg.algo, cfg.controllers
    from rlbal.algo.losses import POLICY_LOSSES  # imports torch: only reached when a recipe is validated

    takes_bounds = POLICY_LOSSES.get(a.loss).needs_bounds  # its clip bounds come from the BAPO search
    if takes_bounds and c.bapo is None:
        raise ValueError(
            f"algo.loss={a.loss} needs controllers.bapo (the adaptive clip search settings); add "
            "`controllers: {bapo: {}}`"
        )
    if c.bapo is not None and not takes_bounds:
        raise ValueError(
            f"controllers.bapo is set but algo.loss={a.loss!r}; set algo.loss=bapo or remove controllers.bapo"
        )
    if c.rollout is not None and c.rollout.n_bar != cfg.rollout.n:
        raise ValueError(
            f"controllers.rollout.n_bar={c.rollout.n_bar:g} differs from rollout.n={cfg.rollout.n}: both are "
            "the mean rollouts per prompt; set only rollout.n (n_bar follows it) or set them equal"
        )
    if c.prompt_gdro is not None and c.prompt_gdro.realise == "sampling" and c.classifier.unseen != "separate":
        raise ValueError(
            "controllers.prompt_gdro.realise=sampling needs controllers.classifier.unseen=separate "
            "(never-observed prompts are drawn as a class of their own)"
        )
    if c.filter is not None and c.filter.min_group_size > cfg.rollout.n:
        raise ValueError(
            f"controllers.filter.min_group_size={c.filter.min_group_size} exceeds rollout.n={cfg.rollout.n}"
        )
    if a.loss_signal == "surrogate_kl" and a.kl_coef == 0:
        raise ValueError("algo.loss_signal=surrogate_kl needs algo.kl_coef > 0 (a reference model)")
    size = cfg.data.size
    sizes = size if isinstance(size, tuple) else (size,)
    if min(sizes) < 1 or (isinstance(size, tuple) and len(size) != len(cfg.data.levels)):
        raise ValueError(
            f"data.size must be >= 1, or one size >= 1 per entry of data.levels "
            f"({len(cfg.data.levels)}), got {list(sizes) if isinstance(size, tuple) else size}"
        )
    if cfg.data.source == "files" and not cfg.data.paths:
        raise ValueError("data.source=files needs data.paths (one or more local files or dataset folders)")
    if cfg.eval.source == "files" and not cfg.eval.paths:
        raise ValueError("eval.source=files needs eval.paths")
    if cfg.rollout.temperature == 0:
        raise ValueError(
            "rollout.temperature=0 samples greedily: every rollout of a prompt is the same, so every "
            "group has zero advantage and nothing is learned; use a temperature > 0 (e.g. 1.0)"
        )
    if cfg.learner.share_prompt_forward and cfg.model.gradient_checkpointing:
        raise ValueError(
            "learner.share_prompt_forward=true needs model.gradient_checkpointing=false (transformers turns the "
            "key/value cache off under gradient checkpointing); set learner.share_prompt_forward=null or false"
        )
    if cfg.ray.async_steps and cfg.run.orchestrator != "ray":
        raise ValueError(
            f"ray.async_steps={cfg.ray.async_steps} needs run.orchestrator=ray (the local loop is "
            "synchronous); set run.orchestrator=ray or remove ray.async_steps"
        )
    from rlbal.algo.compat import check_compatible

    check_compatible(
        a.loss,
        a.aggregation,
        a.advantage,
        max_len=cfg.rollout.max_new_tokens,
        group_by=a.group_by,
        unit=a.group_unit,
        num_bins=c.classifier.num_bins,
        bapo_bounds=c.bapo is not None,
        kl_coef=a.kl_coef,
        kl_estimator=a.kl_estimator,
        is_mode=a.is_correction,
    )


# ----------------------------------------------------------------------------- loading


def load_config(recipe: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Defaults <- recipe YAML <- `key.sub=value` overrides, validated. Raises ConfigError (one line)."""
    raw: dict[str, Any] = {}
    if recipe is not None:
        raw = _read_yaml(Path(recipe))
    for item in overrides:
        _apply_override(raw, item)
    _check_keys(raw, Config)
    try:
        return Config.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_one_line(err)) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key repeated in one mapping (plain YAML keeps the last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ConfigError(
                    f"{self.name}: key {key!r} appears twice in one section (line "
                    f"{key_node.start_mark.line + 1}); YAML would silently drop the first one"
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"recipe not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.object[err.start]:#04x} at offset {err.start})") from None
    try:
        loader = _UniqueKeyLoader(text)
        loader.name = str(path)
        try:
            data = loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe must be a mapping of sections, got {type(data).__name__}")
    return data


def _apply_override(raw: dict[str, Any], item: str) -> None:
    key, sep, text = item.partition("=")
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {item!r} is not of the form key.sub=value")
    value = _parse_value(text)
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"override {item!r}: '{part}' is a value, not a section")
        node = child
    node[parts[-1]] = value


_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)$")


def _parse_value(text: str) -> Any:
    """YAML scalar/list/mapping; '1e-5' is a float (YAML 1.1 would read it as a string)."""
    if not text:
        return None
    return float(text) if _FLOAT.match(text) else yaml.safe_load(text)


def _fields_of(model: Any) -> dict[str, Any]:
    """Field name -> annotation for a pydantic model or an embedded dataclass config."""
    if isinstance(model, type) and issubclass(model, BaseModel):
        return {k: f.annotation for k, f in model.model_fields.items()}
    return {k: v.type for k, v in getattr(model, "__dataclass_fields__", {}).items()}


def _section_type(annotation: Any) -> Any | None:
    """The model/dataclass type inside `X | None`, else None (a leaf value)."""
    for cand in getattr(annotation, "__args__", None) or (annotation,):
        if isinstance(cand, type) and (issubclass(cand, BaseModel) or hasattr(cand, "__dataclass_fields__")):
            return cand
    return None


def _check_keys(raw: dict[str, Any], model: Any, prefix: str = "") -> None:
    """Reject unknown keys before pydantic does, so the message can name the closest valid key."""
    fields = _fields_of(model)
    for key, value in raw.items():
        path = f"{prefix}{key}"
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.6)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else f" (valid keys: {', '.join(fields)})"
            raise ConfigError(f"unknown key '{path}'{hint}")
        sub = _section_type(fields[key])
        if sub is not None and isinstance(value, dict):
            _check_keys(value, sub, prefix=f"{path}.")
        elif sub is None and isinstance(value, dict):
            raise ConfigError(f"'{path}' is a value, not a section (got {value!r})")


def _one_line(err: ValidationError) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"] if not str(p).startswith("function-"))
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "value_error" and not loc:
        return msg
    got = first.get("input")
    shown = "" if isinstance(got, dict) or got is None else f" (got {got!r})"
    return f"{loc}: {msg}{shown}" if loc else msg


def save_resolved(cfg: Config, run_dir: Path) -> Path:
    """Write the fully resolved config (every default filled in) into the run directory."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "config.yaml"
    path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    return path


def explain(config: Config | None = None) -> list[str]:
    """One line per leaf key: dotted key, value (the config's, else the default), allowed values, documentation
    (see rlbal.explain)."""
    from rlbal.explain import explain_lines

    return explain_lines(Config) if config is None else explain_lines(Config, config)


if __name__ == "__main__":
    print("\n".join(explain()))
