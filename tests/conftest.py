"""Session-wide fixtures shared by several test packages."""
from __future__ import annotations

import pytest

RAY_NUM_CPUS = 4


@pytest.fixture(scope="session")
def ray_session(tmp_path_factory):
    """One local Ray cluster per test session (ray.init twice in one process fails): 4 logical CPUs on the
    2-core machine so fractional actors fit, no dashboard, a private temp dir."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=RAY_NUM_CPUS, include_dashboard=False, object_store_memory=300 * 2**20,
             _temp_dir=str(tmp_path_factory.mktemp("ray")), log_to_driver=False)
    yield ray
    ray.shutdown()
