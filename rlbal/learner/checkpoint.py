"""Atomic checkpoints with keep-last-k and `resume: auto`.

A checkpoint is a folder `RUN/checkpoints/step_<N>/` holding:
    model/                 HF folder (safetensors) of the policy: loadable with from_pretrained
    optimizer.safetensors  optimizer + scheduler tensors (torch backend), or accelerate's state folder (accelerate backend)
    trainer_state.json     step, controller states, data cursor, RNG states, counters (plain JSON)
    COMPLETE               written last
It is written into a temporary sibling and renamed into place, so a kill at any moment leaves either the
new complete checkpoint or the previous one; `latest_complete()` ignores temporaries and folders without
COMPLETE. Nothing is unpickled: tensors come back through safetensors, the rest is JSON.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Callable

_STEP_DIR = re.compile(r"^step_(\d+)$")


def checkpoint_root(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def complete_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of every complete checkpoint, oldest first."""
    root = checkpoint_root(run_dir)
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        m = _STEP_DIR.match(child.name)
        if m and (child / "COMPLETE").is_file():
            found.append((int(m.group(1)), child))
    return sorted(found)


def latest_complete(run_dir: Path) -> Path | None:
    found = complete_checkpoints(run_dir)
    return found[-1][1] if found else None


def resolve_resume(run_dir: Path, resume: str) -> Path | None:
    """The checkpoint to start from: 'auto' = newest complete one (or None), 'never' = None, else a path."""
    if resume == "never":
        return None
    if resume == "auto":
        return latest_complete(run_dir)
    path = Path(resume)
    if not (path / "COMPLETE").is_file():
        raise FileNotFoundError(f"run.resume={resume!r}: not a complete checkpoint folder (no COMPLETE file)")
    return path


def write_checkpoint(run_dir: Path, step: int, write: Callable[[Path], None], keep_last: int,
                     is_main: bool = True, barrier: Callable[[], None] = lambda: None) -> Path:
    """Create `step_<step>` atomically. `write(tmp_dir)` fills the folder (every rank calls it: sharded states
    write their own files); the main rank then marks it complete, renames it into place and prunes old ones."""
    root = checkpoint_root(run_dir)
    final = root / f"step_{step}"
    tmp = root / f".tmp-step_{step}"
    if is_main:
        root.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)  # leftover of a save that was killed
        tmp.mkdir()
    barrier()
    write(tmp)
    barrier()
    if is_main:
        _fsync_tree(tmp)
        (tmp / "COMPLETE").write_text(json.dumps({"step": step}))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(root)
        for _, old in complete_checkpoints(run_dir)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    barrier()
    return final


def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj))


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
