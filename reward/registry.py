"""Turning a recipe's reward description into a callable: built-in names or ``package.module:function`` paths.

A ``RewardSpec`` is plain data (it crosses into worker processes, where ``build_reward`` runs again):

    RewardSpec("math", {"extraction": "boxed_or_last_number"})      # a built-in, with keyword arguments
    RewardSpec("my_project.rewards:length_penalty", weight=0.1)      # your own function, by import path

Custom functions follow the contract of ``reward.result.RewardFn``: ``fn(completion, answer, **meta)``
returning a ``RewardResult`` or a float. A function without ``**meta`` receives only the meta keys it names.
The recipe's kwargs win over per-prompt meta keys of the same name. Resolution fails early, with one clear
line, on an unknown name, a module that is not found, a missing attribute, a non-callable or a signature
that cannot take ``(completion, answer, **kwargs)``.

>>> fn = build_reward(RewardSpec("numeric"))
>>> fn("so 7", "7").outcome
'correct'
>>> resolve_reward("mathh")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
reward.registry.RewardSpecError: unknown reward 'mathh': use one of ('math', 'numeric', ...) or an import path ...
"""

from __future__ import annotations

import importlib
import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from reward import math as math_module
from reward import rgym as rgym_module
from reward.combine import WeightedReward
from reward.extract import check_extraction
from reward.format import check_style, format_reward
from reward.gsm8k import gsm8k_reward
from reward.numeric import exact_reward, numeric_reward
from reward.result import RewardFn
from rlbal.registry import Registry

REWARDS: Registry[RewardFn] = Registry("reward")
for _name, _fn in (
    ("math", math_module.math_reward),
    ("numeric", numeric_reward),
    ("exact", exact_reward),
    ("gsm8k", gsm8k_reward),
    ("rgym", rgym_module.rgym_reward),
    ("format", format_reward),
):
    REWARDS.add(_name, _fn)
# Heavy modules a worker imports at start, so the first timed call does not pay for them.
PRELOADS: dict[str, tuple[str, ...]] = {"math": math_module.PRELOAD, "rgym": rgym_module.PRELOAD}


class RewardSpecError(ValueError):
    """A reward description that cannot be turned into a callable."""


@dataclass(frozen=True)
class RewardSpec:
    """fn: a name from REWARDS or "package.module:function"; kwargs: bound keyword arguments;
    weight: its factor when several rewards are summed (``reward.combine``)."""

    fn: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.fn, str) or not self.fn:
            raise ValueError(f"RewardSpec.fn must be a reward name or import path, got {self.fn!r}")
        if not math.isfinite(self.weight):
            raise ValueError(f"RewardSpec.weight must be finite, got {self.weight!r}")
        object.__setattr__(self, "kwargs", dict(self.kwargs))


def resolve_reward(fn: str) -> Callable:
    """The callable named by ``fn``: a key of REWARDS or an import path "package.module:function"."""
    if fn in REWARDS:
        return REWARDS.get(fn)
    module_name, sep, attr_path = fn.partition(":")
    if not sep or not module_name or not attr_path:
        raise RewardSpecError(
            f"unknown reward {fn!r}: use one of {tuple(REWARDS)} or an import path 'package.module:function'"
        )
    obj = _import_module(module_name, fn)
    for attr in attr_path.split("."):
        if not hasattr(obj, attr):
            public = sorted(name for name in vars(obj) if not name.startswith("_"))
            raise RewardSpecError(f"reward {fn!r}: {obj.__name__!r} has no attribute {attr!r} (it has: {public})")
        obj = getattr(obj, attr)
    if not callable(obj):
        raise RewardSpecError(f"reward {fn!r} is not callable (it is a {type(obj).__name__})")
    return obj


def _import_module(module_name: str, fn: str):
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Only a miss of the named module itself is a spec error; a missing dependency inside it says so too.
        if exc.name is not None and (module_name + ".").startswith(exc.name + "."):
            raise RewardSpecError(
                f"reward {fn!r}: module {module_name!r} not found (is it installed / on sys.path?)"
            ) from exc
        raise RewardSpecError(f"reward {fn!r}: importing {module_name!r} failed: {exc}") from exc


@dataclass(frozen=True)
class BoundReward:
    """fn with its recipe kwargs bound; meta_keys is None when fn takes **meta, else the keywords it names."""

    fn: Callable
    kwargs: Mapping[str, Any]
    meta_keys: frozenset[str] | None

    def __call__(self, completion: str, answer: str, **meta):
        if self.meta_keys is not None:
            meta = {key: value for key, value in meta.items() if key in self.meta_keys}
        return self.fn(completion, answer, **{**meta, **self.kwargs})


def bind_reward(spec: RewardSpec) -> BoundReward:
    """Resolve spec.fn and check that it can be called as fn(completion, answer, **spec.kwargs), where every
    kwarg names a parameter (a typo must not vanish into a built-in's **meta)."""
    fn = resolve_reward(spec.fn)
    signature = inspect.signature(fn)
    params = list(signature.parameters.values())
    named = frozenset(p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))
    unknown = sorted(set(spec.kwargs) - named)
    try:
        signature.bind("completion", "answer", **spec.kwargs)
        if unknown:
            raise TypeError(f"no parameter named {unknown}")
    except TypeError as exc:
        raise RewardSpecError(
            f"reward {spec.fn!r} with kwargs {sorted(spec.kwargs)} cannot be called as "
            f"fn(completion, answer, **kwargs): {exc}; its signature is {signature}"
        ) from exc
    _check_builtin_kwargs(spec)
    takes_meta = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
    return BoundReward(fn, dict(spec.kwargs), None if takes_meta else named)


def _check_builtin_kwargs(spec: RewardSpec) -> None:
    # Closed-set options of the built-ins fail here, at construction, not on every call inside a worker.
    if spec.fn in REWARDS and "extraction" in spec.kwargs:
        check_extraction(spec.kwargs["extraction"])
    if spec.fn == "format" and "style" in spec.kwargs:
        check_style(spec.kwargs["style"])


def as_specs(reward: str | RewardSpec | Sequence[RewardSpec]) -> tuple[RewardSpec, ...]:
    """Normalise a name, one spec or several specs to a non-empty tuple of specs."""
    if isinstance(reward, str):
        return (RewardSpec(reward),)
    if isinstance(reward, RewardSpec):
        return (reward,)
    specs = tuple(reward)
    if not specs or not all(isinstance(spec, RewardSpec) for spec in specs):
        raise RewardSpecError(f"reward must be a name, a RewardSpec or a non-empty sequence of them, got {reward!r}")
    return specs


def build_reward(reward: str | RewardSpec | Sequence[RewardSpec], threshold: float = 1.0) -> RewardFn:
    """One callable for the description: the bound reward itself, or a WeightedReward when there are
    several specs or a weight other than 1 (the first spec is then the correctness part)."""
    specs = as_specs(reward)
    bound = [bind_reward(spec) for spec in specs]
    if len(specs) == 1 and specs[0].weight == 1.0:
        return bound[0]
    return WeightedReward(tuple((s.fn, b, s.weight) for s, b in zip(specs, bound, strict=True)), threshold=threshold)


def preload_modules(reward: str | RewardSpec | Sequence[RewardSpec]) -> tuple[str, ...]:
    """Modules to import in a worker before its first timed call (built-ins' heavy deps, custom modules)."""
    names: list[str] = []
    for spec in as_specs(reward):
        names += PRELOADS.get(spec.fn, ()) if spec.fn in REWARDS else (spec.fn.partition(":")[0],)
    return tuple(dict.fromkeys(names))
