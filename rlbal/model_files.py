"""Is a folder a loadable Hugging Face model? Checked from file names, headers and sizes, without loading it
(milliseconds), so a bad `model.path` or a damaged checkpoint fails in one line before anything heavy loads.

    check_model_folder(Path("my_model"))      # the folder, or ModelError naming the first problem
    safetensors_problem(Path("model.safetensors"))   # None, or e.g.
                                                     # 'truncated (5000 bytes, the header describes 1446456)'
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from rlbal.errors import ModelError

WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def check_model_folder(path: Path) -> Path:
    """An existing folder checked as a HF model folder without loading it; ModelError names the first problem:
    config.json missing or not JSON, no weights, a weight file that is truncated or not safetensors, an index
    naming a missing shard, no tokenizer files."""
    path = Path(path)
    config = path / "config.json"
    if not config.is_file():
        raise ModelError(f"model folder {path.resolve()} has no config.json (not a Hugging Face model folder)")
    try:
        if not isinstance(json.loads(config.read_text(encoding="utf-8")), dict):
            raise ValueError("not a JSON object")
    except (ValueError, UnicodeDecodeError) as e:
        raise ModelError(f"{config.resolve()}: not a valid config ({str(e).splitlines()[0][:120]})") from None
    weights = sorted(p for pattern in WEIGHT_PATTERNS for p in path.glob(pattern))
    if not weights:
        raise ModelError(f"model folder {path.resolve()} has no weights (*.safetensors or pytorch_model*.bin)")
    for index in path.glob("*.index.json"):
        try:
            shards = set(json.loads(index.read_text())["weight_map"].values())
        except (ValueError, KeyError, TypeError, AttributeError):
            raise ModelError(f"{index.resolve()}: not a valid weight index (no 'weight_map')") from None
        missing = sorted(s for s in shards if not (path / s).is_file())
        if missing:
            raise ModelError(f"{index.resolve()}: names shard {missing[0]}, which is missing")
    for file in weights:
        if file.suffix == ".safetensors":
            problem = safetensors_problem(file)
            if problem:
                raise ModelError(f"{file.resolve()}: {problem}")
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise ModelError(f"model folder {path.resolve()} has no tokenizer ({', '.join(TOKENIZER_FILES)})")
    return path


def safetensors_problem(file: Path) -> str | None:
    """Why a .safetensors file cannot be loaded, from its header and size alone (None = looks whole).

    The format: 8 bytes little-endian header length N, N bytes of JSON {name: {dtype, shape, data_offsets}},
    then the tensor bytes; the largest end offset + 8 + N is the file size a complete file has.
    """
    size = file.stat().st_size
    with file.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return f"truncated ({size} bytes; not a safetensors file)"
        (n,) = struct.unpack("<Q", head)
        if n > size - 8:
            return f"truncated or not safetensors (header of {n} bytes in a {size}-byte file)"
        try:
            header = json.loads(f.read(n))
            end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
        except (ValueError, KeyError, TypeError, IndexError, AttributeError):
            return "not a safetensors file (unreadable header)"
    if 8 + n + end > size:
        return f"truncated ({size} bytes, the header describes {8 + n + end})"
    return None
