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
