"""OpenMP waits passively only where several Luigi workers share the cores."""

from __future__ import annotations

import pytest

from pipeline import _workers_requested


@pytest.mark.parametrize("argv, workers", [
    (["nvsc", "run"], 1),
    (["nvsc", "run", "--workers", "2"], 2),
    (["luigi", "--module", "pipeline.tasks", "BuildReport", "--workers=4"], 4),
    (["nvsc", "run", "--workers"], 1),
])
def test_workers_are_read_from_the_command_line(argv, workers):
    assert _workers_requested(argv) == workers


@pytest.mark.parametrize("workers, threads", [(1, None), (2, "1")])
def test_several_workers_share_the_cores_with_passive_waits(workers, threads):
    """Each of N workers gets cores // N OpenMP threads that wait passively; one worker keeps torch's defaults."""
    import os
    import subprocess
    import sys

    env = {name: value for name, value in os.environ.items() if not name.startswith("OMP_")}
    probe = ("import os, sys; sys.argv = ['nvsc', 'run', '--workers', sys.argv[1]]; import pipeline; "
             "print(os.environ.get('OMP_NUM_THREADS'), os.environ.get('OMP_WAIT_POLICY'), os.cpu_count())")
    out = subprocess.run([sys.executable, "-c", probe, str(workers)], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    cores = int(out[2])
    expected = (str(max(1, cores // workers)), "PASSIVE") if workers > 1 else ("None", "None")
    assert (out[0], out[1]) == expected
    if threads is not None and cores == 2:
        assert out[0] == threads  # this project's 2-core machine: one thread per worker
