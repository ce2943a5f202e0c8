"""A small DAG run through a central `luigid` scheduler by two workers."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

from tests.pipeline.conftest import BIN, PipelineRunner

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"luigid did not listen on port {port}")


def test_two_workers_through_a_central_scheduler(tmp_path):
    runner = PipelineRunner(tmp_path)
    port = free_port()
    (tmp_path / "logs").mkdir()  # luigid logs there and does not create it
    luigid = subprocess.Popen(
        [str(BIN / "luigid"), "--address", "127.0.0.1", "--port", str(port), "--pidfile", str(tmp_path / "pid"),
         "--logdir", str(tmp_path / "logs"), "--state-path", str(tmp_path / "state.pickle")],
        cwd=tmp_path, env=runner.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        result = runner("luigi", "BuildReport", "--scheduler-host", "127.0.0.1", "--scheduler-port", str(port),
                        "--workers", "2", "--BuildReport-methods", '["ground_truth", "noise"]')
        assert result.returncode == 0, result.stderr[-4000:]
        query = urllib.parse.quote(json.dumps({"status": "DONE", "upstream_status": "", "search": ""}))
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/task_list?data={query}", timeout=10) as reply:
            done = json.loads(reply.read())["response"]
        families = {task["name"] for task in done.values()}
        assert {"PrepareDataset", "GenerateViews", "FitNeRF", "ScoreScene", "BuildReport"} <= families
        assert len(runner.folders("ScoreScene")) == 2  # one scene x two methods
    finally:
        luigid.terminate()
        luigid.wait(timeout=10)


def test_an_unreachable_scheduler_is_named_before_anything_runs(tmp_path):
    port = free_port()  # nothing listens there
    result = PipelineRunner(tmp_path)("nvsc", "run", "--scheduler-host", "127.0.0.1", "--scheduler-port", str(port))
    assert result.returncode == 2 and f"no Luigi scheduler answers at http://127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "runs").exists()


def test_the_same_run_started_twice_stops_the_second_without_a_failure(tmp_path):
    runner = PipelineRunner(tmp_path)
    command = ["nvsc", "run", "--BuildReport-methods", '["ground_truth", "noise"]']
    first = subprocess.Popen([str(BIN / command[0]), *command[1:]], cwd=tmp_path, env=runner.env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "runs").exists() and time.monotonic() < deadline:  # the first holds Luigi's lock
            time.sleep(0.2)
        second = runner(*command)
        assert second.returncode == 10, second.stderr[-3000:]  # [retcode] already_running of luigi.cfg
        assert "nothing failed" in second.stderr and "already running on this machine" in second.stderr
    finally:
        output, _ = first.communicate(timeout=600)
    assert first.returncode == 0, output[-3000:]


def test_two_different_runs_on_one_central_scheduler_share_their_tasks_and_both_succeed(tmp_path):
    # Two command lines asking for different reports on one output root, through one luigid: the scheduler
    # hands each shared task to one worker, the other waits for it (--worker-keep-alive), each task runs once,
    # and both runs exit 0 with their reports built.
    runner = PipelineRunner(tmp_path)
    port = free_port()
    (tmp_path / "logs").mkdir()
    luigid = subprocess.Popen(
        [str(BIN / "luigid"), "--address", "127.0.0.1", "--port", str(port), "--pidfile", str(tmp_path / "pid"),
         "--logdir", str(tmp_path / "logs"), "--state-path", str(tmp_path / "state.pickle")],
        cwd=tmp_path, env=runner.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        runs = [subprocess.Popen(
            [str(BIN / "nvsc"), "run", "--scheduler-host", "127.0.0.1", "--scheduler-port", str(port),
             "--workers", "2", "--worker-keep-alive", "--BuildReport-methods", methods],
            cwd=tmp_path, env=runner.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for methods in ('["ground_truth", "noise"]', '["ground_truth", "perturbed"]')]
        outputs = [run.communicate(timeout=600)[0] for run in runs]
    finally:
        luigid.terminate()
        luigid.wait(timeout=10)
    for run, output in zip(runs, outputs):
        assert run.returncode == 0, output[-3000:]
        assert "nvsc: done." in output
    started = [line.split(" running ", 1)[1].strip() for output in outputs for line in output.splitlines()
               if " running " in line and "Worker(" in line]
    assert started and len(started) == len(set(started)), "a task ran twice"
    assert sum("PrepareDataset(" in task for task in started) == 1
    assert len(runner.folders("BuildReport")) == 2
    assert len(runner.folders("ScoreScene")) == 3  # one scene x {ground truth, noise, perturbed}
    assert not list((tmp_path / "runs").glob("*/.*.tmp-*"))
