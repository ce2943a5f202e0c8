"""Runs of the real pipeline in a scratch folder, through the same commands a user types."""

from __future__ import annotations

import fcntl
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
        # A temporary folder of its own, and so a Luigi lock folder of its own (tempfile.gettempdir()/luigi): Luigi
        # refuses a command already running on the machine, and tests in parallel (pytest -n) run the same ones.
        temporary = workdir.parent / f"{workdir.name}-tmp"
        temporary.mkdir(exist_ok=True)
        self.env = {**os.environ, "LUIGI_CONFIG_PATH": str(workdir / "tiny.cfg"), "PYTHONUNBUFFERED": "1",
                    "TMPDIR": str(temporary)}

    def __call__(self, command: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        argv = [str(BIN / command), *args]
        if command == "luigi":
            argv[1:1] = ["--module", "pipeline.tasks"]
        return subprocess.run(argv, cwd=self.workdir, env=self.env, capture_output=True, text=True,
                              timeout=timeout)

    def folders(self, task: str) -> set[str]:
        root = self.workdir / "runs" / task
        return {p.name for p in root.iterdir() if not p.name.startswith(".")} if root.is_dir() else set()


@pytest.fixture(scope="session")
def tiny_pipeline_run(tmp_path_factory) -> Path:
    """The runs folder of one run of the whole tiny pipeline, through `luigi ... --local-scheduler`: one for the
    whole test run, also under pytest-xdist, where the first worker to need it runs it and the others wait for it
    (in the folder above their own temporary folders, which they share)."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return _run_tiny_pipeline(tmp_path_factory.mktemp("pipeline-run"))
    shared = tmp_path_factory.getbasetemp().parent / "tiny-pipeline-run"
    with open(f"{shared}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (shared / "done").is_file():  # none ran it yet, or its run failed (and failed its tests)
            shutil.rmtree(shared, ignore_errors=True)
            shared.mkdir()
            runs = _run_tiny_pipeline(shared)
            (shared / "done").touch()
            return runs
    return shared / "runs"


def _run_tiny_pipeline(workdir: Path) -> Path:
    runner = PipelineRunner(workdir)
    result = runner("luigi", "BuildReport", "--local-scheduler")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    return workdir / "runs"


@pytest.fixture(scope="module")
def tiny_pipeline(tiny_pipeline_run, tmp_path_factory) -> PipelineRunner:
    """A workdir where the whole tiny pipeline has run once: a copy of the session's run for each test module, so
    what one module's tests rerun or add there is not seen by another's."""
    runner = PipelineRunner(tmp_path_factory.mktemp("pipeline"))
    shutil.copytree(tiny_pipeline_run, runner.workdir / "runs", symlinks=True)
    return runner
