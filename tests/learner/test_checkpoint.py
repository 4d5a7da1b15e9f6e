"""Atomic checkpoints: a kill while writing leaves the previous checkpoint usable; keep-last-k; resume selection."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlbal.errors import CheckpointError
from rlbal.learner.checkpoint import (
    complete_checkpoints,
    latest_complete,
    resolve_resume,
    verify_checkpoint,
    write_checkpoint,
)


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
    with pytest.raises(
        CheckpointError, match=re.escape(f"run.resume='{tmp_path / 'nope'}': no such checkpoint folder")
    ):
        resolve_resume(tmp_path, str(tmp_path / "nope"))
    (tmp_path / "half").mkdir()
    with pytest.raises(CheckpointError, match=re.escape("not a complete checkpoint folder (no COMPLETE file)")):
        resolve_resume(tmp_path, str(tmp_path / "half"))
    path = write_checkpoint(tmp_path / "other", 3, _write_files("3"), keep_last=2)
    assert resolve_resume(tmp_path, str(path)) == path


def _fixed_files(folder: Path) -> None:
    (folder / "model").mkdir()
    (folder / "model" / "w.bin").write_bytes(bytes(range(256)) * 4)
    (folder / "rng.json").write_text('{"seed": 1}')


def test_manifest_lists_every_file_with_size_and_sha256(tmp_path):
    path = write_checkpoint(tmp_path, 1, _fixed_files, keep_last=2)
    manifest = json.loads((path / "COMPLETE").read_text())
    assert manifest == {
        "step": 1,
        "files": {
            "model/w.bin": [1024, hashlib.sha256(bytes(range(256)) * 4).hexdigest()],
            "rng.json": [11, hashlib.sha256(b'{"seed": 1}').hexdigest()],
        },
    }
    assert verify_checkpoint(path) is None


# (damage done to the newest checkpoint, what verify_checkpoint says about it)
DAMAGE = [
    (
        "truncated",
        lambda c: (c / "model/w.bin").write_bytes((c / "model/w.bin").read_bytes()[:100]),
        "model/w.bin has 100 bytes, expected 1024",
    ),
    (
        "overwritten",
        lambda c: (c / "model/w.bin").write_bytes(b"\xff" * 1024),
        "model/w.bin does not match its sha256 (bytes changed since the save)",
    ),
    ("emptied", lambda c: (c / "rng.json").write_text(""), "rng.json has 0 bytes, expected 11"),
    ("deleted", lambda c: (c / "rng.json").unlink(), "rng.json is missing"),
    ("manifest", lambda c: (c / "COMPLETE").write_text("{trunc"), "its COMPLETE manifest is unreadable"),
]


@pytest.mark.parametrize("name,damage,why", DAMAGE, ids=[d[0] for d in DAMAGE])
def test_damaged_newest_falls_back_to_the_previous_with_one_warning(tmp_path, name, damage, why):
    for step in (1, 2, 3):
        write_checkpoint(tmp_path, step, _fixed_files, keep_last=3)
    newest = tmp_path / "checkpoints" / "step_3"
    damage(newest)
    assert verify_checkpoint(newest) == why
    lines: list[str] = []
    assert resolve_resume(tmp_path, "auto", warn=lines.append) == tmp_path / "checkpoints" / "step_2"
    assert lines == [f"checkpoint {newest} is damaged ({why}); resuming from the previous one, step_2"]
    with pytest.raises(CheckpointError) as err:
        resolve_resume(tmp_path, str(newest))
    assert str(err.value) == f"run.resume='{newest}': the checkpoint is damaged ({why})"


def test_no_verifying_checkpoint_is_one_error_line(tmp_path):
    for step in (1, 2):
        write_checkpoint(tmp_path, step, _fixed_files, keep_last=2)
    (tmp_path / "checkpoints/step_2/rng.json").write_text("")
    (tmp_path / "checkpoints/step_1/model/w.bin").write_bytes(b"")
    lines: list[str] = []
    with pytest.raises(CheckpointError) as err:
        resolve_resume(tmp_path, "auto", warn=lines.append)
    assert str(err.value) == (
        f"no checkpoint in {tmp_path / 'checkpoints'} verifies (step_2: rng.json has 0 bytes, "
        "expected 11; step_1: model/w.bin has 0 bytes, expected 1024); move them away or start "
        "over with run.resume=never"
    )
    assert lines == []


def test_checkpoint_from_before_manifests_is_accepted(tmp_path):
    path = write_checkpoint(tmp_path, 1, _fixed_files, keep_last=2)
    (path / "COMPLETE").write_text(json.dumps({"step": 1}))
    assert verify_checkpoint(path) is None and resolve_resume(tmp_path, "auto") == path
