"""Task outputs: one folder per data product, named by a recursive hash, written atomically with provenance.

The folder name carries a hash of the task's significant parameters *and* of the hashes of every task it requires
(recursively, as gokart's `_make_hash_id` does), so changing a parameter of one stage gives that stage and every
stage after it new folders, while the stages before it stay complete and are not rerun.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import luigi

from pipeline.provenance import provenance_record

logger = logging.getLogger("nvsc.pipeline")

PROVENANCE_FILE = "provenance.json"
#: About when this process started: a staging folder older than this one cannot be one it is writing. Taken at
#: import, before any task of this process stages (forked workers inherit it from the process that started them).
PROCESS_START = time.time()
HOST = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())
#: `.NAME.tmp-<pid>@<host>-<random>`: who stages the folder, so that the next run can tell a killed task's leftover
#: from a folder another live run is filling (mkdtemp's random part holds no "-").
STAGING_NAME = re.compile(r"\.tmp-(?P<pid>\d+)@(?P<host>.+)-[a-z0-9_]+$")


def _flatten(requirements) -> list[luigi.Task]:
    return list(luigi.task.flatten(requirements))


def signature(task: luigi.Task) -> str:
    """Hash of the task family, its significant parameters and the signatures of all tasks it requires."""
    params = task.to_str_params(only_significant=True, only_public=True)
    # A parameter added later leaves the signature alone at the value that reproduces the old behaviour, so the
    # outputs computed before it existed stay valid (`hash_neutral`: name -> serialised value).
    for name, value in getattr(task, "hash_neutral", {}).items():
        if params.get(name) == value:
            del params[name]
    upstream = sorted(signature(t) for t in _flatten(task.requires()))
    text = json.dumps({"family": task.get_task_family(), "params": params, "upstream": upstream}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


class FolderTarget(luigi.LocalTarget):
    """A folder that exists only once complete: it is filled under a temporary name and renamed into place."""

    @property
    def folder(self) -> Path:
        return Path(self.path)

    def exists(self) -> bool:
        return (self.folder / PROVENANCE_FILE).is_file()

    def stamp(self) -> tuple[int, int] | None:
        """Which completion of this folder is in place (its provenance file's inode and mtime), None if none."""
        try:
            status = (self.folder / PROVENANCE_FILE).stat()
        except FileNotFoundError:
            return None
        return status.st_ino, status.st_mtime_ns

    @contextmanager
    def claimed(self) -> Iterator[None]:
        """Hold this folder's lock (`<root>/.locks/<Task>/<name>.lock`) while a task computes it.

        Luigi keeps one run's workers from running a task twice, but two runs on one output root (other command
        lines, other schedulers) do not know of each other: the second would compute the same folder again, into
        the same work folders. Holding the lock, the second waits for the first and then finds the folder
        complete. The lock is the kernel's (`flock`), so a killed task releases it; runs in other output roots
        never share one.
        """
        # Outside the task's folder, so that a failed task leaves nothing there; never deleted, since removing a
        # lock file that another process may just have opened would let two processes hold "the" lock.
        lock = self.folder.parent.parent / ".locks" / self.folder.parent.name / f"{self.folder.name}.lock"
        lock.parent.mkdir(parents=True, exist_ok=True)
        with open(lock, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @contextmanager
    def staging(self, task: luigi.Task) -> Iterator[Path]:
        """Yield an empty temporary folder beside the target; on success add provenance and rename it into place.

        On any exception the temporary folder is removed, so a failed task leaves nothing behind.
        """
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_staging(self.folder.parent)
        staging = Path(tempfile.mkdtemp(prefix=f".{self.folder.name}.tmp-{os.getpid()}@{HOST}-",
                                        dir=self.folder.parent))
        try:
            upstream = {t.task_id: {"signature": signature(t), "output": t.output().path}
                        for t in _flatten(task.requires())}
            with provenance_record(task, signature(task), upstream) as record:
                yield staging
            (staging / PROVENANCE_FILE).write_text(json.dumps(record, indent=2, default=str))
            if self.folder.exists():  # a stale, incomplete folder from an interrupted older version
                shutil.rmtree(self.folder)
            os.replace(staging, self.folder)
        finally:
            if staging.exists():
                shutil.rmtree(staging)


def process_alive(pid: int) -> bool:
    """Whether a process `pid` runs on this machine (signal 0 checks without signalling)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_staging(parent: Path) -> list[Path]:
    """Remove the staging folders in `parent` that killed tasks left (kill -9 runs no clean-up); returns them.

    A folder is stale when it was last written before this process started and the process its name records is
    gone (or is this process, whose pid was then a former process's). Folders of other machines sharing `parent`,
    whose pids mean nothing here, and of live processes are never touched.
    """
    removed = []
    for path in Path(parent).glob(".*.tmp-*"):
        match = STAGING_NAME.search(path.name)
        if not match or match["host"] != HOST:
            continue
        pid = int(match["pid"])
        try:
            older = path.stat().st_mtime < PROCESS_START
        except FileNotFoundError:  # finished or removed meanwhile
            continue
        if older and (pid == os.getpid() or not process_alive(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
            logger.info("removed %s, left by a task that was killed while writing it", path)
    return removed
