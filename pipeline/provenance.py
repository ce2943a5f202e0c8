"""What produced a data product: parameters, upstream folders, seed, package versions, git revision, timing."""

from __future__ import annotations

import platform
import subprocess
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Iterator

import luigi

PACKAGES = ("nvsc", "torch", "torchvision", "numpy", "nerfstudio", "torchmetrics", "lpips", "luigi", "trimesh",
            "safetensors", "pandas", "matplotlib")


@lru_cache(maxsize=1)
def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


@lru_cache(maxsize=1)
def git_revision() -> str:
    """HEAD of the nvsc checkout, with `+dirty` when it has uncommitted changes; `unknown` outside a checkout."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


@contextmanager
def provenance_record(task: luigi.Task, task_signature: str, upstream: dict[str, dict]) -> Iterator[dict]:
    """Yield a provenance dict for `task`; timing fields are filled in when the block ends."""
    started = time.perf_counter()
    record = {
        "task": task.get_task_family(),
        "task_id": task.task_id,
        "signature": task_signature,
        "parameters": task.to_str_params(only_significant=False, only_public=True),
        "upstream": upstream,
        "packages": package_versions(),
        "git_revision": git_revision(),
        "python": platform.python_version(),
        "host": platform.node(),
        "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    yield record
    record["finished_utc"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    record["seconds"] = round(time.perf_counter() - started, 3)
