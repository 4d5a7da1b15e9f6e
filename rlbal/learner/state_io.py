"""Save nested states (optimizer, scheduler, RNGs) without pickle: tensors go to one safetensors file, the
structure and every other value to JSON. Loading never executes code from the checkpoint.

    >>> import torch, tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> save_tree({"a": torch.ones(2), "b": [1, (2.5, "x")], 3: {"c": None}}, d, "s")
    >>> load_tree(d, "s")
    {'a': tensor([1., 1.]), 'b': [1, (2.5, 'x')], 3: {'c': None}}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file


def _encode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = obj.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        return {"__dict__": [[_encode(k, tensors), _encode(v, tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, tensors) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v, tensors) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot checkpoint a value of type {type(obj).__name__} without pickle")


def _decode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__tuple__" in obj:
            return tuple(_decode(v, tensors) for v in obj["__tuple__"])
        return {_decode(k, tensors): _decode(v, tensors) for k, v in obj["__dict__"]}
    return obj


def save_tree(obj: Any, folder: Path, name: str) -> None:
    tensors: dict[str, torch.Tensor] = {}
    structure = _encode(obj, tensors)
    (Path(folder) / f"{name}.json").write_text(json.dumps(structure))
    save_file(tensors, str(Path(folder) / f"{name}.safetensors"))


def load_tree(folder: Path, name: str) -> Any:
    tensors = load_file(str(Path(folder) / f"{name}.safetensors"))
    return _decode(json.loads((Path(folder) / f"{name}.json").read_text()), tensors)
