"""Atomic checkpoints: a kill while writing leaves the previous checkpoint usable; keep-last-k; resume selection."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlbal.learner.checkpoint import complete_checkpoints, latest_complete, resolve_resume, write_checkpoint


def _write_files(payload: str):
    def write(folder: Path) -> None:
        (folder / "a.json").write_text(json.dumps({"payload": payload}))
        (folder / "b.bin").write_bytes(os.urandom(1024))

    return write


def test_keep_last_and_latest(tmp_path):
    for step in (1, 2, 3, 4):
        write_checkpoint(tmp_path, step, _write_files(str(step)), keep_last=2)
    assert [s for s, _ in complete_checkpoints(tmp_path)] == [3, 4]
    assert latest_complete(tmp_path).name == "step_4"
    assert json.loads((latest_complete(tmp_path) / "a.json").read_text()) == {"payload": "4"}


def test_failure_while_writing_keeps_previous(tmp_path):
    write_checkpoint(tmp_path, 1, _write_files("1"), keep_last=2)

    def crash(folder: Path) -> None:
        (folder / "a.json").write_text("{half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_checkpoint(tmp_path, 2, crash, keep_last=2)
    assert latest_complete(tmp_path).name == "step_1"
    write_checkpoint(tmp_path, 2, _write_files("2"), keep_last=2)  # the leftover temporary is replaced
    assert [s for s, _ in complete_checkpoints(tmp_path)] == [1, 2]
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))


KILLED_WRITER = """
import sys, time
from pathlib import Path
from rlbal.learner.checkpoint import write_checkpoint
def slow(folder):
    (folder / "a.json").write_text('{"payload": "2"}')
    Path(sys.argv[2]).write_text("writing")
    time.sleep(60)
write_checkpoint(Path(sys.argv[1]), 2, slow, keep_last=2)
"""


def test_sigkill_during_save_leaves_loadable_previous(tmp_path):
    write_checkpoint(tmp_path, 1, _write_files("1"), keep_last=2)
    flag = tmp_path / "flag"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(tmp_path), str(flag)])
    deadline = time.time() + 60
    while not flag.exists() and time.time() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert resolve_resume(tmp_path, "auto").name == "step_1"
    assert json.loads((tmp_path / "checkpoints/step_1/a.json").read_text()) == {"payload": "1"}


def test_resolve_resume_modes(tmp_path):
    assert resolve_resume(tmp_path, "auto") is None
    assert resolve_resume(tmp_path, "never") is None
    with pytest.raises(FileNotFoundError, match="not a complete checkpoint"):
        resolve_resume(tmp_path, str(tmp_path / "nope"))
