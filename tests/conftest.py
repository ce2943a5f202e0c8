"""Settings of the whole suite."""

from __future__ import annotations

import os
import sys


def pytest_configure(config):
    """Under pytest-xdist (`-n N`), each of the N workers gets its share of the cores, as each of N Luigi workers
    does (pipeline/__init__.py): N processes of all the cores' OpenMP threads each starve each other and slow torch
    down many times over. Set in the environment, the share also reaches the pipeline runs the tests start."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        threads = os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))
        if "torch" in sys.modules:  # too late for the environment to reach this process's torch
            sys.modules["torch"].set_num_threads(int(threads))
