"""Hashed, atomic, provenance-carrying task outputs, on toy tasks run by the real Luigi scheduler."""

from __future__ import annotations

import json

import luigi
import pytest

from pipeline.outputs import PROVENANCE_FILE, signature
from pipeline.tasks import NvscTask, nvsc


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
