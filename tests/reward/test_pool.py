"""WorkerPool directly: start-up failures are fatal and loud, a worker lost between steps is replaced."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import deque
from pathlib import Path

import pytest

from reward.pool import WorkerPool
from reward.registry import RewardSpec

SCRIPTED = (RewardSpec("tests.reward.faulty_rewards:scripted"),)
ROOT = Path(__file__).resolve().parents[2]


def _pool(specs, startup_timeout_s: float = 60.0, size: int = 1) -> WorkerPool:
    # (specs, threshold, preload): the executor normally builds these; here the parent never validates them.
    return WorkerPool(mp.get_context("forkserver"), size, (specs, 1.0, ()), 1.0, startup_timeout_s)


@pytest.mark.parametrize("call", ["run", "wait_ready"])
def test_worker_start_up_error_is_fatal_with_its_traceback(call):
    pool = _pool((RewardSpec("no_such_pkg.rewards:fn"),))
    failed = r"(?s)reward worker failed to start:.*module 'no_such_pkg.rewards' not found"  # (?s): traceback lines
    with pytest.raises(RuntimeError, match=failed):
        pool.run([("a", "a", {})], chunk_size=1) if call == "run" else pool.wait_ready()
    with pytest.raises(RuntimeError, match="after close"):
        pool.run([("a", "a", {})], chunk_size=1)


def test_start_up_timeout_is_fatal(tmp_path, monkeypatch):
    # A reward module whose import takes 3 s, importable only through sys.path, which workers inherit.
    (tmp_path / "slow_reward_module.py").write_text("import time\ntime.sleep(3.0)\ndef reward(c, a):\n    return 1.0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    pool = _pool((RewardSpec("slow_reward_module:reward"),), startup_timeout_s=0.5)
    with pytest.raises(RuntimeError, match=r"not ready after 0.5 s"):
        pool.run([("a", "a", {})], chunk_size=1)


def test_worker_lost_while_idle_is_replaced_without_blame():
    pool = _pool(SCRIPTED, size=2)
    pool.wait_ready()
    assert all(w.ready for w in pool._workers)
    assert pool.run([("a", "a", {}), ("b", "a", {})], chunk_size=1) == [
        (1.0, "correct", "float reward 1.0 >= threshold 1.0"),
        (0.0, "wrong", "float reward 0.0 < threshold 1.0"),
    ]
    lost = pool._workers[0].process
    lost.kill()  # e.g. the OOM killer, between two steps
    lost.join()
    results = pool.run([("a", "a", {})] * 5, chunk_size=2)
    assert [outcome for _, outcome, _ in results] == ["correct"] * 5
    assert pool.restarts == 1
    pool.close()
    assert all(w.process.exitcode is not None for w in pool._workers)


def test_leftovers_of_an_interrupted_run_do_not_leak():
    pool = _pool(SCRIPTED, size=1)
    pool.run([("a", "a", {})], chunk_size=1)  # started and idle
    # What a KeyboardInterrupt inside run() leaves behind: a chunk sent and never collected.
    pool._dispatch(deque([[0]]), [("b", "a", {})])
    results = pool.run([("a", "a", {}), ("a", "a", {})], chunk_size=1)
    assert [outcome for _, outcome, _ in results] == ["correct", "correct"]  # not the stale "wrong" for slot 0
    assert pool.restarts == 1
    pool.close()


@pytest.mark.parametrize("method", ["forkserver", "spawn", "fork"])
def test_every_start_method_survives_a_crash(method):
    pool = WorkerPool(mp.get_context(method), 1, (SCRIPTED, 1.0, ()), 1.0, 60.0)
    results = pool.run([("a", "a", {}), ("exit", "a", {}), ("b", "a", {})], chunk_size=3)
    assert [outcome for _, outcome, _ in results] == ["correct", "error", "wrong"]
    pool.close()


def _alive(pid: int) -> bool:
    # A zombie (exited, not yet reaped) counts as gone: /proc/<pid>/stat has state "Z" after the ")".
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rpartition(")")[2].split()[0] != "Z"


def test_hung_workers_exit_when_the_scoring_process_dies():
    # The trainer is SIGKILLed while both workers spin in a hung reward: they must not spin forever.
    code = textwrap.dedent("""
        from reward import RewardExecutor, RewardSpec
        ex = RewardExecutor(RewardSpec("tests.reward.faulty_rewards:scripted"), 2, timeout_s=600.0, chunk_size=1)
        ex.wait_ready()
        print(*[w.process.pid for w in ex._pool._workers], flush=True)
        ex.score(["hang", "hang"], ["a", "a"])
    """)
    trainer = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    pids = [int(pid) for pid in trainer.stdout.readline().split()]
    time.sleep(0.5)  # both workers are inside the hanging call by now
    assert len(pids) == 2 and all(_alive(pid) for pid in pids)
    trainer.kill()
    trainer.wait()
    deadline = time.monotonic() + 5.0  # the workers check their parent every second
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    survivors = [pid for pid in pids if _alive(pid)]
    for pid in survivors:  # do not leave spinning processes behind even when the test fails
        os.kill(pid, signal.SIGKILL)
    assert survivors == []
