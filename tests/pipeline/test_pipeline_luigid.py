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
