"""Hashed, atomic, provenance-carrying task outputs, on toy tasks run by the real Luigi scheduler."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import luigi
import pytest

from pipeline.outputs import PROVENANCE_FILE, signature
from pipeline.tasks import NvscTask, nvsc

ROOT = Path(__file__).resolve().parents[2]


class Upstream(NvscTask):
    value = luigi.IntParameter(default=1)
    note = luigi.Parameter(default="", significant=False)

    def produce(self, folder):
        (folder / "value.txt").write_text(str(self.value))


class Downstream(NvscTask):
    upstream_value = luigi.IntParameter(default=1)
    fail = luigi.BoolParameter(default=False)

    def requires(self):
        return Upstream(value=self.upstream_value)

    def produce(self, folder):
        (folder / "partial.txt").write_text("half done")
        if self.fail:
            raise RuntimeError("crash in the middle of writing")
        (folder / "sum.txt").write_text(str(int((self.input().folder / "value.txt").read_text()) + 1))


@pytest.fixture(autouse=True)
def output_root(tmp_path):
    config = luigi.configuration.get_config()
    config.set("nvsc", "output_root", str(tmp_path))
    yield tmp_path
    config.remove_option("nvsc", "output_root")
    nvsc.clear_instance_cache()


def test_signature_follows_significant_parameters_and_upstream():
    assert signature(Upstream(value=1)) == signature(Upstream(value=1, note="ignored"))
    assert signature(Upstream(value=1)) != signature(Upstream(value=2))
    # Downstream has the same own parameters; only its upstream differs, and that must change its folder.
    assert signature(Downstream(upstream_value=1)) != signature(Downstream(upstream_value=2))
    assert Downstream(upstream_value=1).output().path != Downstream(upstream_value=2).output().path


class WithNewOption(Upstream):
    option = luigi.ListParameter(default=[])
    hash_neutral = {"option": "[]"}


def test_a_parameter_added_later_keeps_old_folders_at_its_neutral_value():
    # The signature of a task without the option, computed the same way: family, parameters, upstream.
    old = Upstream(value=1)
    neutral, other = WithNewOption(value=1), WithNewOption(value=1, option=[1, 2])
    assert neutral.to_str_params(only_significant=True)["option"] == "[]"
    assert signature(neutral) != signature(other)
    params = {k: v for k, v in neutral.to_str_params(only_significant=True, only_public=True).items() if k != "option"}
    assert params == old.to_str_params(only_significant=True, only_public=True)


def test_complete_output_has_data_and_provenance(output_root):
    assert luigi.build([Downstream()], local_scheduler=True, log_level="WARNING")
    folder = Downstream().output().folder
    assert (folder / "sum.txt").read_text() == "2"
    record = json.loads((folder / PROVENANCE_FILE).read_text())
    assert record["signature"] == signature(Downstream())
    assert record["parameters"]["upstream_value"] == "1"
    assert [u["signature"] for u in record["upstream"].values()] == [signature(Upstream())]
    assert {"torch", "luigi", "numpy"} <= set(record["packages"]) and record["seconds"] >= 0


def test_failed_task_leaves_nothing_and_keeps_upstream(output_root):
    assert not luigi.build([Downstream(fail=True)], local_scheduler=True, log_level="CRITICAL")
    assert Upstream().complete()  # what was already computed is kept
    assert not Downstream(fail=True).complete()
    leftovers = [p for p in (output_root / "Downstream").iterdir()] if (output_root / "Downstream").exists() else []
    assert leftovers == []


class Slow(NvscTask):
    """Stages one file, then waits (to be killed mid-staging) unless `quick`."""

    value = luigi.IntParameter(default=1)
    quick = luigi.BoolParameter(default=False)

    def produce(self, folder):
        (folder / "partial.txt").write_text("half done")
        while not self.quick:
            time.sleep(0.05)


STAGE = ("import sys, luigi; luigi.configuration.get_config().set('nvsc', 'output_root', sys.argv[1]); "
         "from tests.pipeline.test_pipeline_outputs import Slow; "
         "sys.exit(0 if luigi.build([Slow(value=int(sys.argv[2]), quick=sys.argv[3] == 'quick')], "
         "local_scheduler=True, log_level='WARNING') else 1)")


def stage(output_root: Path, value: int, quick: bool) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", STAGE, str(output_root), str(value), "quick" if quick else "slow"],
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})


def staged(output_root: Path, value: int) -> list[Path]:
    prefix = f".{Slow(value=value).output().folder.name}.tmp-"
    family = output_root / "Slow"
    return [p for p in family.iterdir() if p.name.startswith(prefix)] if family.is_dir() else []


def wait_for_staging(output_root: Path, value: int) -> Path:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        folders = [p for p in staged(output_root, value) if (p / "partial.txt").is_file()]
        if folders:
            return folders[0]
        time.sleep(0.05)
    raise AssertionError("the task never started staging")


def test_a_killed_tasks_staging_folder_is_removed_by_the_next_run_but_a_live_ones_is_kept(output_root):
    killed, live = stage(output_root, 1, quick=False), stage(output_root, 2, quick=False)
    try:
        dead_folder, live_folder = wait_for_staging(output_root, 1), wait_for_staging(output_root, 2)
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        assert dead_folder.is_dir()  # kill -9 runs no clean-up
        other_host = output_root / "Slow" / f".{Slow(value=3).output().folder.name}.tmp-{killed.pid}@elsewhere-x1"
        other_host.mkdir()  # a process on another machine sharing the folder: its pid means nothing here
        os.utime(other_host, (0, 0))
        time.sleep(0.05)  # the next run starts after the kill, as a person would run it again
        assert stage(output_root, 4, quick=True).wait(timeout=120) == 0
        assert not dead_folder.exists(), "the killed task's staging folder was left behind"
        assert live_folder.is_dir() and (live_folder / "partial.txt").is_file(), "a live run's staging was removed"
        assert other_host.is_dir()
    finally:
        for process in (killed, live):
            if process.poll() is None:
                process.kill()
                process.wait()


def test_nvsc_run_removes_stale_staging_folders_of_every_task(tmp_path):
    from pipeline.outputs import HOST
    from tests.pipeline.conftest import PipelineRunner

    gone = subprocess.Popen(["true"])
    gone.wait()
    stale = tmp_path / "runs" / "FitNeRF" / f".noise-mug_0002-0123456789ab.tmp-{gone.pid}@{HOST}-abc_12"
    stale.mkdir(parents=True)
    (stale / "partial.txt").write_text("half done")
    result = PipelineRunner(tmp_path)("nvsc", "run", "PrepareDataset")
    assert result.returncode == 0, result.stderr[-3000:]
    assert not stale.exists() and (tmp_path / "runs" / "FitNeRF").is_dir()


class Counted(NvscTask):
    """Counts its computations in a file outside the output root, and takes a while to compute."""

    log = luigi.Parameter(significant=False)

    def produce(self, folder):
        with open(self.log, "a") as log:
            log.write(f"{os.getpid()}\n")
        (folder / "partial.txt").write_text("half done")
        release = Path(self.log).with_suffix(".release")
        while not release.is_file():
            time.sleep(0.02)


class NeedsCounted(NvscTask):
    log = luigi.Parameter(significant=False)

    def requires(self):
        return Counted(log=self.log)

    def produce(self, folder):
        (folder / "done.txt").write_text("ok")


BUILD = ("import sys, luigi; luigi.configuration.get_config().set('nvsc', 'output_root', sys.argv[1]); "
         "import tests.pipeline.test_pipeline_outputs as t; "
         "sys.exit(0 if luigi.build([getattr(t, sys.argv[2])(log=sys.argv[3])], local_scheduler=True, "
         "log_level='WARNING') else 1)")


def test_two_runs_on_one_root_compute_a_shared_task_once(output_root, tmp_path):
    # Two local schedulers with different command lines know nothing of each other: the second, started while
    # the first computes the task both need, waits for it and uses its folder instead of computing it again
    # into the same place.
    log = tmp_path / "computations.txt"

    def build(task):
        return subprocess.Popen([sys.executable, "-c", BUILD, str(output_root), task, str(log)], cwd=ROOT,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})

    first = build("Counted")
    deadline = time.monotonic() + 60
    while not log.is_file() and time.monotonic() < deadline:  # the first is inside produce
        time.sleep(0.02)
    second = build("NeedsCounted")
    deadline = time.monotonic() + 8  # long enough for the second to reach Counted, and compute it if it would
    while len(log.read_text().splitlines()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    log.with_suffix(".release").write_text("")
    assert first.wait(timeout=120) == 0 and second.wait(timeout=120) == 0
    assert len(log.read_text().splitlines()) == 1, "the shared task was computed twice"
    assert (NeedsCounted(log=str(log)).output().folder / "done.txt").is_file()
    assert [p.name for p in (output_root / "Counted").iterdir()] == [Counted(log=str(log)).output().folder.name]
