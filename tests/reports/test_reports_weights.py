"""The metric-weights cache: import by checksum or name, refusal of wrong or unsafe files, fetch, list, the CLI."""

from __future__ import annotations

import json
import logging
import pickle
import shutil

import pytest
import torch

from pipeline.cli import main
from reports import weights
from reports.weights import MANIFEST, WeightsMissingError, import_file, resolve
from scenes.errors import InvalidInputError
from tests.reports.weight_files import make_weight_file


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache folder that `$NVSC_WEIGHTS_DIR` points at."""
    folder = tmp_path / "cache"
    monkeypatch.setenv(weights.WEIGHTS_DIR_ENV, str(folder))
    return folder


def test_missing_weights_name_the_fetch_command(cache):
    with pytest.raises(WeightsMissingError, match="nvsc weights fetch alexnet") as caught:
        resolve("alexnet")
    assert caught.value.names == ["alexnet"]
    assert weights.missing(["alexnet", "lpips-alex"]) == ["alexnet", "lpips-alex"]
    assert weights.missing_reason(["alexnet", "lpips-alex"]) == "weights missing: nvsc weights fetch alexnet lpips-alex"


def test_random_file_is_identified_by_name_and_kept_unverified_with_a_warning(cache, tmp_path, caplog):
    source = make_weight_file("alexnet", tmp_path / "downloads")
    with caplog.at_level(logging.WARNING, logger="reports.weights"):
        name, path, verified = import_file(source)
    assert (name, verified) == ("alexnet", False)
    assert "not comparable" in caplog.text
    assert path == cache / MANIFEST["alexnet"].filename and path.read_bytes() == source.read_bytes()
    record = json.loads(path.with_name(path.name + ".json").read_text())
    assert record["sha256"] == weights.sha256_of(source) and record["verified"] is False
    assert resolve("alexnet") == path


def test_published_file_is_identified_by_checksum_under_any_name(cache, tmp_path):
    shipped = weights._packaged_copy(MANIFEST["lpips-vgg"])
    renamed = tmp_path / "heads-copied-by-hand.bin"
    shutil.copy(shipped, renamed)
    name, path, verified = import_file(renamed)
    assert (name, verified) == ("lpips-vgg", True)
    assert weights.sha256_of(path) == MANIFEST["lpips-vgg"].sha256


def test_unknown_file_needs_a_name(cache, tmp_path):
    source = make_weight_file("lpips-alex", tmp_path, filename="mystery.pth")
    with pytest.raises(InvalidInputError, match="--name"):
        import_file(source)
    assert import_file(source, name="lpips-alex")[0] == "lpips-alex"


@pytest.mark.parametrize("claimed", ["alexnet", "inception-v3-fid", "lpips-vgg"])
def test_file_of_another_architecture_is_refused_and_nothing_is_stored(cache, tmp_path, claimed):
    source = make_weight_file("lpips-alex", tmp_path, filename="heads.pth")
    with pytest.raises(InvalidInputError, match=f"not the {claimed} architecture"):
        import_file(source, name=claimed)
    assert not cache.exists() or not any(cache.iterdir())


def test_truncated_file_is_refused(cache, tmp_path):
    source = make_weight_file("alexnet", tmp_path)
    source.write_bytes(source.read_bytes()[:100_000])
    with pytest.raises(InvalidInputError, match="does not load as a tensor state dict"):
        import_file(source)


class _RunsCode:
    def __reduce__(self):
        return (print, ("this would have run",))


def test_pickle_that_would_run_code_is_refused(cache, tmp_path):
    source = tmp_path / MANIFEST["lpips-alex"].filename
    torch.save({"lin0.model.1.weight": torch.zeros(1, 64, 1, 1), "payload": _RunsCode()}, source,
               pickle_protocol=pickle.DEFAULT_PROTOCOL)
    with pytest.raises(InvalidInputError, match="does not load as a tensor state dict"):
        import_file(source)


def test_fetch_copies_heads_shipped_with_lpips_without_network(cache):
    paths = weights.fetch(["lpips-alex"])
    assert paths == [cache / MANIFEST["lpips-alex"].filename]
    assert weights.sha256_of(paths[0]) == MANIFEST["lpips-alex"].sha256
    rows = {row["name"]: row for row in weights.list_weights()}
    assert rows["lpips-alex"]["present"] and rows["lpips-alex"]["verified"]
    assert not rows["alexnet"]["present"]


def test_file_placed_by_hand_gets_its_checksum_recorded(cache, tmp_path):
    path = make_weight_file("lpips-alex", cache)
    assert resolve("lpips-alex") == path
    record = json.loads(path.with_name(path.name + ".json").read_text())
    assert record == {**record, "sha256": weights.sha256_of(path), "verified": False, "architecture_checked": True}
    # A wrong file placed by hand is refused on first use, like an import.
    make_weight_file("lpips-vgg", cache, filename=MANIFEST["lpips-alex"].filename)
    with pytest.raises(InvalidInputError, match="not the lpips-alex architecture"):
        resolve("lpips-alex")


def test_identity_changes_when_weights_arrive(cache, tmp_path):
    before = weights.identity(["alexnet", "lpips-alex"])
    import_file(make_weight_file("alexnet", tmp_path))
    after = weights.identity(["alexnet", "lpips-alex"])
    assert before != after and weights.identity(["alexnet", "lpips-alex"]) == after


def test_unknown_name_is_refused(cache):
    with pytest.raises(InvalidInputError, match="unknown weights 'resnet'"):
        weights.fetch(["resnet"])


def test_cli_import_then_list(cache, tmp_path, capsys):
    source = make_weight_file("lpips-vgg", tmp_path, filename="vgg-heads.pth")
    assert main(["weights", "import", str(source), "--name", "lpips-vgg"]) == 0
    assert "NOT the published one" in capsys.readouterr().out
    assert main(["weights", "list"]) == 0
    listing = capsys.readouterr().out
    assert str(cache) in listing
    assert [line.split()[:2] for line in listing.splitlines() if "lpips-vgg" in line] == [["lpips-vgg", "unverified"]]
    assert [line.split()[:2] for line in listing.splitlines() if "vgg16" in line] == [["vgg16", "missing"]]
    assert main(["weights", "import", str(tmp_path / "absent.pth")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_download_path_checks_the_checksum(cache, tmp_path, monkeypatch):
    """`fetch` through its download branch, with the transfer served locally: the published lpips file passes,
    a random AlexNet (whose sha256 cannot start with the published prefix) is refused and not stored."""
    served = {"lpips-alex": weights._packaged_copy(MANIFEST["lpips-alex"]),
              "alexnet": make_weight_file("alexnet", tmp_path / "served")}
    by_url = {MANIFEST[name].url: path for name, path in served.items()}
    monkeypatch.setattr(weights, "_packaged_copy", lambda entry: None)
    monkeypatch.setattr(weights.urllib.request, "urlretrieve", lambda url, target: shutil.copy(by_url[url], target))
    (path,) = weights.fetch(["lpips-alex"])
    assert json.loads(path.with_name(path.name + ".json").read_text())["source"] == MANIFEST["lpips-alex"].url
    with pytest.raises(InvalidInputError, match="is not the published 7be5be79"):
        weights.fetch(["alexnet"])
    assert weights.missing(["alexnet"]) == ["alexnet"]
