"""Task outputs: one folder per data product, named by a recursive hash, written atomically with provenance.

The folder name carries a hash of the task's significant parameters *and* of the hashes of every task it requires
(recursively, as gokart's `_make_hash_id` does), so changing a parameter of one stage gives that stage and every
stage after it new folders, while the stages before it stay complete and are not rerun.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import luigi

from pipeline.provenance import provenance_record

PROVENANCE_FILE = "provenance.json"


def _flatten(requirements) -> list[luigi.Task]:
    return list(luigi.task.flatten(requirements))


def signature(task: luigi.Task) -> str:
    """Hash of the task family, its significant parameters and the signatures of all tasks it requires."""
    params = task.to_str_params(only_significant=True, only_public=True)
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

    @contextmanager
    def staging(self, task: luigi.Task) -> Iterator[Path]:
        """Yield an empty temporary folder beside the target; on success add provenance and rename it into place.

        On any exception the temporary folder is removed, so a failed task leaves nothing behind.
        """
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{self.folder.name}.tmp-", dir=self.folder.parent))
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
