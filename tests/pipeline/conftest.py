"""Runs of the real pipeline in a scratch folder, through the same commands a user types."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TINY_CONFIG = Path(__file__).with_name("tiny.cfg")
BIN = Path(sys.executable).parent


class PipelineRunner:
    """Runs `luigi`/`nvsc` in `workdir` with the tiny configuration and no other luigi.cfg in sight."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        shutil.copy(TINY_CONFIG, workdir / "tiny.cfg")
        self.env = {**os.environ, "LUIGI_CONFIG_PATH": str(workdir / "tiny.cfg"), "PYTHONUNBUFFERED": "1"}

    def __call__(self, command: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        argv = [str(BIN / command), *args]
        if command == "luigi":
            argv[1:1] = ["--module", "pipeline.tasks"]
        return subprocess.run(argv, cwd=self.workdir, env=self.env, capture_output=True, text=True,
                              timeout=timeout)

    def folders(self, task: str) -> set[str]:
        root = self.workdir / "runs" / task
        return {p.name for p in root.iterdir() if not p.name.startswith(".")} if root.is_dir() else set()


@pytest.fixture(scope="module")
def tiny_pipeline(tmp_path_factory) -> PipelineRunner:
    """A workdir where the whole tiny pipeline has run once, through `luigi ... --local-scheduler`."""
    runner = PipelineRunner(tmp_path_factory.mktemp("pipeline"))
    result = runner("luigi", "BuildReport", "--local-scheduler")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    return runner
