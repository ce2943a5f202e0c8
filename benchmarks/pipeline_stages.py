"""Time per pipeline stage, read from the logs of `nvsc run` (Luigi's `running` / `done` lines of every task).

    python benchmarks/pipeline_stages.py runs-gpu/objects.log runs-gpu/panorama.log

Prints one markdown table: for every log and task family, how many tasks ran, when the first started and the last
ended (seconds after the earliest line of all the logs, so runs side by side share one clock), the task-seconds
spent (their sum: more than the span when workers ran them in parallel) and the longest task. Tasks that failed
are counted in their own column. benchmarks/pipeline_gpu.sh prints it after the GPU benchmark.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

# 2026-11-22 13:17:38,733 INFO luigi-interface: [pid 2561] Worker Worker(salt=..., pid=2561) done      Task(a=1, ...)
LINE = re.compile(r"^(?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \S+ luigi-interface: \[pid \d+\] "
                  r"Worker Worker\([^)]*\) (?P<event>running|done|failed)\s+(?P<task>(?P<family>\w+)\(.*\))\s*$")
FIRST_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")
FORMAT = "%Y-%m-%d %H:%M:%S,%f"


@dataclass
class Stage:
    """The tasks of one family in one log."""

    tasks: int = 0
    failed: int = 0
    first_start: float = float("inf")
    last_end: float = float("-inf")
    busy: float = 0.0
    longest: float = 0.0
    open: dict[str, float] = field(default_factory=dict)


def read_stages(path: Path) -> tuple[dict[str, Stage], float | None]:
    """{family: Stage} with absolute POSIX times, and the time of the log's first timestamped line."""
    stages: dict[str, Stage] = {}
    first = None
    for line in path.read_text(errors="replace").splitlines():
        stamp = FIRST_TIME.match(line)
        if stamp and first is None:
            first = datetime.strptime(stamp.group(1), FORMAT).timestamp()
        match = LINE.match(line)
        if not match:
            continue
        when = datetime.strptime(match["time"], FORMAT).timestamp()
        stage = stages.setdefault(match["family"], Stage())
        if match["event"] == "running":
            stage.open[match["task"]] = when
            stage.first_start = min(stage.first_start, when)
            continue
        started = stage.open.pop(match["task"], None)
        if started is None:
            continue
        stage.tasks += 1
        stage.failed += match["event"] == "failed"
        stage.busy += when - started
        stage.longest = max(stage.longest, when - started)
        stage.last_end = max(stage.last_end, when)
    return stages, first


def table(paths: list[Path]) -> str:
    """The markdown table of every log's stages, in the order they started."""
    runs = [(path, *read_stages(path)) for path in paths]
    starts = [first for _, _, first in runs if first is not None]
    if not starts:
        return "no timestamped lines in " + ", ".join(map(str, paths))
    origin = min(starts)
    rows = ["| log | stage | tasks | failed | first start (s) | last end (s) | task-seconds | longest task (s) |",
            "|---|---|---:|---:|---:|---:|---:|---:|"]
    for path, stages, _ in runs:
        for family, stage in sorted(stages.items(), key=lambda item: item[1].first_start):
            end = f"{stage.last_end - origin:.0f}" if stage.tasks else "-"
            unfinished = f" (+{len(stage.open)} unfinished)" if stage.open else ""
            rows.append(f"| {path.stem} | {family}{unfinished} | {stage.tasks} | {stage.failed} | "
                        f"{stage.first_start - origin:.0f} | {end} | {stage.busy:.0f} | {stage.longest:.1f} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("logs", nargs="+", type=Path, help="Logs of `nvsc run` (its standard error).")
    args = parser.parse_args()
    print(table([path for path in args.logs if path.is_file()]))


if __name__ == "__main__":
    main()
