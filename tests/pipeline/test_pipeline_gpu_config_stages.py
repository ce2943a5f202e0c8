"""benchmarks/pipeline_stages.py, the per-stage times benchmarks/pipeline_gpu.sh prints: read from Luigi's lines of
two logs side by side, against times counted by hand."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "pipeline_stages.py"
WORKER = "Worker Worker(salt=1, workers=2, host=vm, username=u, pid=7)"


def load_script():
    spec = importlib.util.spec_from_file_location("pipeline_stages", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up while the class is built
    spec.loader.exec_module(module)
    return module


def line(clock: str, event: str, task: str) -> str:
    return f"2026-11-22 10:{clock} INFO luigi-interface: [pid 8] {WORKER} {event:<9} {task}"


def test_stage_times_from_two_logs_on_one_clock(tmp_path):
    objects = tmp_path / "objects.log"
    objects.write_text("\n".join([
        "2026-11-22 10:00:00,000 INFO nvsc: start",
        line("00:01,000", "running", "PrepareDataset(source=procedural)"),
        "2026-11-22 10:00:03,000 INFO luigi-interface: Informed scheduler that task   X   has status   DONE",
        line("00:11,000", "done", "PrepareDataset(source=procedural)"),
        line("00:11,000", "running", "TrainGenerator(architecture=xunet, steps=700)"),
        line("00:12,000", "running", "TrainGenerator(architecture=mvdiffusion, steps=300)"),
        line("01:12,000", "done", "TrainGenerator(architecture=mvdiffusion, steps=300)"),
        line("01:41,600", "done", "TrainGenerator(architecture=xunet, steps=700)"),
        line("01:42,000", "running", "GenerateViews(scene=mug_0032, method=noise)"),
        line("01:44,000", "failed", "GenerateViews(scene=mug_0032, method=noise)"),
        line("01:45,000", "running", "GenerateViews(scene=mug_0033, method=noise)"),
    ]) + "\n")
    panorama = tmp_path / "panorama.log"
    panorama.write_text("\n".join([
        line("00:02,000", "running", "PrepareDataset(source=panorama)"),
        line("00:06,000", "done", "PrepareDataset(source=panorama)"),
    ]) + "\n")
    stages = load_script()
    rows = stages.table([objects, panorama]).splitlines()
    # Seconds after 10:00:00 (the objects log's first line, the earlier of the two).
    assert rows[2:] == [
        "| objects | PrepareDataset | 1 | 0 | 1 | 11 | 10 | 10.0 |",
        "| objects | TrainGenerator | 2 | 0 | 11 | 102 | 151 | 90.6 |",
        "| objects | GenerateViews (+1 unfinished) | 1 | 1 | 102 | 104 | 2 | 2.0 |",
        "| panorama | PrepareDataset | 1 | 0 | 2 | 6 | 4 | 4.0 |",
    ]
