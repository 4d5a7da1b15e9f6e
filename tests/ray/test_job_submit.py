"""`ray job submit` end to end: a head node started by the test, a tiny Ray-orchestrated training job.

The cluster is started with `ray start --head --block` in its own process group (localhost only, token
auth off, every port chosen free so it can run beside the session cluster) and stopped by ending that
process group: never `ray stop`, which would stop every Ray cluster of the machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import yaml

from rlbal.learner.checkpoint import verify_checkpoint

ROOT = Path(__file__).resolve().parents[2]
PORT_FLAGS = (
    "--port",
    "--dashboard-port",
    "--ray-client-server-port",
    "--dashboard-agent-listen-port",
    "--dashboard-agent-grpc-port",
    "--metrics-export-port",
    "--runtime-env-agent-port",
    "--node-manager-port",
    "--object-manager-port",
)

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def cluster_env() -> dict[str, str]:
    """The venv first on PATH (the job's `python` is the one on the PATH of `ray start`), token auth off."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        RAY_AUTH_MODE="disabled",
        RAY_USAGE_STATS_ENABLED="0",
    )
    return env


@pytest.fixture
def head(tmp_path):
    """`http://127.0.0.1:<dashboard port>` of a fresh head node; the whole node is stopped afterwards."""
    ports = dict(zip(PORT_FLAGS, free_ports(len(PORT_FLAGS))))
    temp = Path(tempfile.mkdtemp(prefix="rlray-", dir="/tmp"))  # Ray's socket paths must stay under 108 bytes
    cmd = [
        str(Path(sys.executable).parent / "ray"),
        "start",
        "--head",
        "--block",
        "--num-cpus",
        "4",
        "--node-ip-address",
        "127.0.0.1",
        "--dashboard-host",
        "127.0.0.1",
        "--include-dashboard",
        "true",
        "--temp-dir",
        str(temp),
        "--disable-usage-stats",
        *[x for flag, port in ports.items() for x in (flag, str(port))],
    ]
    log = open(tmp_path / "ray_start.log", "w")
    proc = subprocess.Popen(cmd, env=cluster_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"http://127.0.0.1:{ports['--dashboard-port']}"
    try:
        wait_for_dashboard(address, proc, tmp_path / "ray_start.log")
        yield address
    finally:
        stop_group(proc)
        log.close()
        left = processes_mentioning(str(temp))  # every Ray process of the node names its session folder
        shutil.rmtree(temp, ignore_errors=True)
        assert not left, f"Ray processes left running: {left}"


def stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM the process group of `ray start --block` (it stops what it started), SIGKILL what is left."""
    for sig, wait_s in ((signal.SIGTERM, 5), (signal.SIGKILL, 10)):
        with contextlib.suppress(ProcessLookupError):  # the group is already gone
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=wait_s)


def processes_mentioning(text: str) -> list[int]:
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            if text in cmdline.read_bytes().decode(errors="replace"):
                pids.append(int(cmdline.parent.name))
    return pids


def wait_for_dashboard(address: str, proc: subprocess.Popen, log: Path, timeout_s: float = 180.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ray start exited with {proc.returncode}: {log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{address}/api/version", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(1.0)
    raise RuntimeError(f"dashboard at {address} not up after {timeout_s:g}s: {log.read_text()[-3000:]}")


def test_ray_job_submit_trains_with_ray_actors_and_writes_the_run(head, tmp_path, overrides, metrics_of):
    args = overrides(
        tmp_path,
        "job",
        "run.orchestrator=ray",
        "rollout.engine=hf",
        "run.max_steps=2",
        "ray.rollout_actors=1",
        "ray.learner_ranks=1",
        "ray.init_timeout_s=300",
    )
    ray_cli = str(Path(sys.executable).parent / "ray")
    job_id = f"rlbal-test-{uuid.uuid4().hex[:8]}"
    cmd = [
        ray_cli,
        "job",
        "submit",
        "--address",
        head,
        "--submission-id",
        job_id,
        "--working-dir",
        str(ROOT),
        "--",
        "python",
        "-m",
        "rlbal.train",
        "recipes/gdro.yaml",
        *args,
    ]
    job = subprocess.run(cmd, env=cluster_env(), capture_output=True, text=True, timeout=900, cwd=ROOT)
    out = job.stdout + job.stderr
    assert job.returncode == 0, out[-4000:]
    assert f"Job '{job_id}' succeeded" in out  # `ray job submit` follows the job to its final status
    # The job's whole log, from the cluster (the follower above may drop lines): the orchestrator's start-up line.
    logs = subprocess.run(
        [ray_cli, "job", "logs", "--address", head, job_id],
        env=cluster_env(),
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert "[rlbal.ray] 1 rollout actor(s) (hf) + 1 learner rank(s) (torch), colocated" in logs, logs[-3000:]
    assert "Traceback" not in logs
    run_dir = tmp_path / "job"
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["run"]["orchestrator"] == "ray"
    metrics = metrics_of(run_dir)
    assert sorted(metrics) == [0, 1, 2]
    assert metrics[2]["ray/actor_restarts"] == 0.0  # the Ray orchestrator ran the steps (its counters are logged)
    assert metrics[2]["rollout/num_sequences"] == 32.0  # 8 prompts x 4 rollouts
    complete = json.loads((run_dir / "checkpoints" / "step_2" / "COMPLETE").read_text())
    assert complete["step"] == 2 and verify_checkpoint(run_dir / "checkpoints" / "step_2") is None  # the manifest holds
