"""Weights of the metric networks (Inception-v3 for FID/KID, AlexNet/VGG-16 and the LPIPS linear heads) in one
cache folder, so that scoring never downloads anything.

The cache is `$NVSC_WEIGHTS_DIR`, else `~/.cache/nvsc/weights`. Each file keeps its upstream name (so a file from
a torch hub cache, `~/.cache/torch/hub/checkpoints/alexnet-owt-7be5be79.pth`, can be copied in as it is) and gets
a sidecar `<file>.json` that records its sha256 and whether that checksum was verified against the manifest.

Three ways in:
- `fetch(names)`: on a connected machine, download each file from its source URL (or copy it from an installed
  package that ships it, as `lpips` ships its linear heads), check the checksum, store it.
- `import_file(path)`: for offline machines, a file copied by hand. It is identified by its checksum, else by its
  file name, else by the `name` given. A file whose checksum does not match the manifest is accepted only if
  (a) its name says which weights it is meant to be and (b) it loads into that network's architecture with every
  key and shape matching (`torch.load(weights_only=True)`, so loading it cannot run code); it is then stored with
  `verified: false` and a warning, every time it is used, that scores made with it are not comparable with
  published ones. This is what lets tests (and people with converted or fine-tuned weights) use other weights of
  the right architecture, while a file of the wrong network, a truncated download or a pickle with code in it is
  refused.
- a file placed in the cache folder by hand under its manifest name: its checksum is computed and its
  architecture checked on first use, with the same acceptance rule as `import_file`.

Checksums: the lpips heads carry the full sha256 of the files the `lpips` package ships; torchvision and
torch-fidelity publish only the first 8 hex digits of the sha256, in the file name, which is what
`torch.hub.load_state_dict_from_url(check_hash=True)` verifies, and so is verified here too; since 8 hex digits
prove little, every file is also checked to load into its architecture.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import torch

from scenes.errors import InvalidInputError

logger = logging.getLogger(__name__)

#: Environment variable naming the cache folder.
WEIGHTS_DIR_ENV = "NVSC_WEIGHTS_DIR"
#: Cache folder when the environment variable is unset.
DEFAULT_WEIGHTS_DIR = Path("~/.cache/nvsc/weights")
#: Suffix of the sidecar that records a cached file's checksum and provenance.
SIDECAR_SUFFIX = ".json"


@dataclass(frozen=True)
class WeightSpec:
    """One weight file a score needs."""

    #: Short name used on the command line (`nvsc weights fetch alexnet`).
    name: str
    #: File name in the cache: the upstream file name.
    filename: str
    #: Where `fetch` downloads it from.
    url: str
    #: Expected sha256 (hex): the full digest, or the published prefix of it.
    sha256: str
    #: What it is and who publishes it.
    description: str
    #: Package-relative path of a copy shipped inside an installed Python package (`package/sub/file`), or "".
    packaged: str = ""

    def checksum_matches(self, digest: str) -> bool:
        """Whether a file's full sha256 `digest` is the published one (full digest or its published prefix)."""
        return digest.startswith(self.sha256)


#: Every weight file nvsc's scores use. URLs and checksums are the ones torch-fidelity 0.4 (`URL_INCEPTION_V3`),
#: torchvision (`AlexNet_Weights`, `VGG16_Weights`) and lpips 0.1.4 (`lpips/weights/v0.1/*.pth`) use.
MANIFEST: dict[str, WeightSpec] = {spec.name: spec for spec in (
    WeightSpec("inception-v3-fid", "weights-inception-2015-12-05-6726825d.pth",
               "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
               "weights-inception-2015-12-05-6726825d.pth", "6726825d",
               "Inception-v3 of TensorFlow's FID code (2015-12-05), converted by torch-fidelity: FID and KID"),
    WeightSpec("alexnet", "alexnet-owt-7be5be79.pth", "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
               "7be5be79", "torchvision's ImageNet AlexNet: the backbone of LPIPS (alex)"),
    WeightSpec("vgg16", "vgg16-397923af.pth", "https://download.pytorch.org/models/vgg16-397923af.pth",
               "397923af", "torchvision's ImageNet VGG-16: the backbone of LPIPS (vgg)"),
    WeightSpec("lpips-alex", "lpips-v0.1-alex.pth",
               "https://github.com/richzhang/PerceptualSimilarity/raw/v0.1/lpips/weights/v0.1/alex.pth",
               "df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0",
               "LPIPS v0.1 linear heads on AlexNet (Zhang et al. 2018)", packaged="lpips/weights/v0.1/alex.pth"),
    WeightSpec("lpips-vgg", "lpips-v0.1-vgg.pth",
               "https://github.com/richzhang/PerceptualSimilarity/raw/v0.1/lpips/weights/v0.1/vgg.pth",
               "a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868",
               "LPIPS v0.1 linear heads on VGG-16 (Zhang et al. 2018)", packaged="lpips/weights/v0.1/vgg.pth"),
)}


class WeightsMissingError(InvalidInputError):
    """Weights a score needs are not in the cache. Scoring records the score as missing unless told to be strict."""

    def __init__(self, names: list[str], cache: Path):
        self.names = list(names)
        super().__init__(f"metric weights {', '.join(self.names)}", f"not found in {cache}",
                         f"run `{fetch_command(self.names)}` on a connected machine, or copy the files there and "
                         f"run `nvsc weights import FILE`")


def fetch_command(names: list[str]) -> str:
    """The command that gets `names` into the cache."""
    return "nvsc weights fetch " + " ".join(names)


def missing_reason(names: list[str]) -> str:
    """The text recorded in a score's `missing` column when its weights are absent."""
    return f"weights missing: {fetch_command(names)}"


def weights_dir() -> Path:
    """The cache folder: `$NVSC_WEIGHTS_DIR`, else `~/.cache/nvsc/weights` (not created here)."""
    return Path(os.environ.get(WEIGHTS_DIR_ENV) or DEFAULT_WEIGHTS_DIR).expanduser()


def spec(name: str) -> WeightSpec:
    """The manifest entry `name`, or `InvalidInputError` listing the known names."""
    if name not in MANIFEST:
        raise InvalidInputError("weights name", f"unknown weights '{name}'", f"use one of: {', '.join(MANIFEST)}")
    return MANIFEST[name]


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks (weight files are up to 530 MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR_SUFFIX)


def _record(name: str, cache: Path | None = None) -> dict | None:
    """The sidecar record of cached weights `name` (written on first sight of a hand-placed file), or None."""
    path = (cache or weights_dir()) / spec(name).filename
    if not path.is_file():
        return None
    sidecar = _sidecar(path)
    # The sidecar is trusted while it is newer than the file and records its size; else the file was replaced.
    if sidecar.is_file() and sidecar.stat().st_mtime >= path.stat().st_mtime:
        record = json.loads(sidecar.read_text())
        if record.get("size") == path.stat().st_size:
            return record
    digest = sha256_of(path)
    record = {"name": name, "sha256": digest, "size": path.stat().st_size,
              "verified": spec(name).checksum_matches(digest), "architecture_checked": False,
              "source": "placed in the cache by hand"}
    _write_sidecar(path, record)
    return record


def _write_sidecar(path: Path, record: dict) -> None:
    try:
        _sidecar(path).write_text(json.dumps(record, indent=2))
    except OSError:  # a read-only shared cache: the record is computed again next time
        logger.debug("cannot write the sidecar of %s", path)


def resolve(name: str, cache: Path | None = None) -> Path:
    """Path of cached weights `name`; `WeightsMissingError` when absent. Warns when its checksum is not verified."""
    cache = cache or weights_dir()
    record = _record(name, cache)
    if record is None:
        raise WeightsMissingError([name], cache)
    path = cache / spec(name).filename
    if not record.get("architecture_checked"):  # placed by hand: checked once, on first use
        check_architecture(name, path)
        _write_sidecar(path, {**record, "architecture_checked": True})
    if not record["verified"]:
        logger.warning("weights %s in %s have sha256 %s, not the published %s...: scores made with them are not "
                       "comparable with published ones", name, cache, record["sha256"][:16], spec(name).sha256[:16])
    return path


def missing(names: list[str], cache: Path | None = None) -> list[str]:
    """Those of `names` not in the cache (cheap: looks only at the files, computes no checksum)."""
    cache = cache or weights_dir()
    return [name for name in names if not (cache / spec(name).filename).is_file()]


def identity(names: list[str], cache: Path | None = None) -> str:
    """A short hash of which of `names` are cached and of their checksums: outputs computed with other weights
    (or without them) get another identity, so a run after `nvsc weights fetch` recomputes the scores."""
    records = {name: (_record(name, cache) or {}).get("sha256", "absent") for name in sorted(names)}
    return hashlib.sha256(json.dumps(records, sort_keys=True).encode()).hexdigest()[:8]


# ---------------------------------------------------------------------------------------------------- checks
def load_state_dict(path: Path, what: str) -> dict[str, torch.Tensor]:
    """A state dict from `path` through `torch.load(weights_only=True)`: a file that would run code is refused."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated, not a torch file, or a pickle with objects beyond tensors
        raise InvalidInputError(what, f"{path} does not load as a tensor state dict ({type(error).__name__}: "
                                      f"{str(error).splitlines()[0][:200]})",
                                "fetch the file again (`nvsc weights fetch`) or copy an intact copy") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InvalidInputError(what, f"{path} holds a {type(state).__name__}, not a dict of tensors",
                                "pass the state-dict file the manifest names")
    return state


def _reference_module(name: str) -> torch.nn.Module:
    """A randomly initialised network of the architecture weights `name` belong to (nothing is downloaded)."""
    import torchvision

    if name == "alexnet":
        return torchvision.models.alexnet(weights=None)
    if name == "vgg16":
        return torchvision.models.vgg16(weights=None)
    if name in ("lpips-alex", "lpips-vgg"):
        from reports.lpips_score import lpips_heads

        return lpips_heads(name.removeprefix("lpips-"))
    if name == "inception-v3-fid":
        from reports.fid import inception_architecture

        return inception_architecture()
    raise AssertionError(name)


def check_architecture(name: str, path: Path) -> None:
    """Raise `InvalidInputError` unless the file at `path` has exactly the keys and shapes of weights `name`."""
    what = f"weights file {path.name} (as {name})"
    state = load_state_dict(path, what)
    expected = {key: tuple(value.shape) for key, value in _reference_module(name).state_dict().items()}
    found = {key: tuple(value.shape) for key, value in state.items()}
    if found != expected:
        absent = sorted(set(expected) - set(found))[:3]
        extra = sorted(set(found) - set(expected))[:3]
        shapes = [k for k in set(found) & set(expected) if found[k] != expected[k]][:3]
        raise InvalidInputError(what, f"is not the {name} architecture (missing keys {absent}, unexpected keys "
                                      f"{extra}, other shapes {shapes})",
                                f"import the file that holds {spec(name).description}")


# ---------------------------------------------------------------------------------------------------- import
def _store(source: Path, name: str, digest: str, verified: bool, origin: str, cache: Path) -> Path:
    """Copy `source` into the cache under `name`'s file name, atomically, with its sidecar."""
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / spec(name).filename
    handle, staging = tempfile.mkstemp(prefix=f".{target.name}.", dir=cache)
    os.close(handle)
    try:
        shutil.copyfile(source, staging)
        os.replace(staging, target)
    finally:
        if os.path.exists(staging):
            os.remove(staging)
    record = {"name": name, "sha256": digest, "size": target.stat().st_size, "verified": verified,
              "architecture_checked": True, "source": origin}
    _sidecar(target).write_text(json.dumps(record, indent=2))
    return target


def identify(path: Path, digest: str) -> str | None:
    """The manifest name of a file by its checksum, else by its file name, else None."""
    by_checksum = [s.name for s in MANIFEST.values() if s.checksum_matches(digest)]
    if by_checksum:
        return by_checksum[0]
    # The lpips package ships its heads as `alex.pth`/`vgg.pth`; those names are accepted too.
    by_filename = [s.name for s in MANIFEST.values() if path.name in (s.filename, Path(s.packaged).name)]
    return by_filename[0] if by_filename else None


def import_file(path: Path, name: str | None = None, cache: Path | None = None) -> tuple[str, Path, bool]:
    """Copy a weight file into the cache -> (name, cached path, checksum verified). See the module docstring."""
    cache = cache or weights_dir()
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError("weights file", f"{path} does not exist", "pass the path of a downloaded weight file")
    digest = sha256_of(path)
    if name is not None:
        spec(name)
    found = identify(path, digest)
    name = name or found
    if name is None:
        raise InvalidInputError(f"weights file {path}", f"neither its sha256 ({digest[:16]}...) nor its name matches "
                                                        "any weights nvsc knows",
                                f"pass --name with one of: {', '.join(MANIFEST)}")
    verified = spec(name).checksum_matches(digest)
    # Verified files are checked too: a checksum prefix of 8 hex digits is no proof against a wrong file.
    check_architecture(name, path)
    if not verified:
        logger.warning("%s: sha256 %s... is not the published %s... of %s; accepted because it loads into the "
                       "%s architecture. Scores made with it are not comparable with published ones.",
                       path, digest[:16], spec(name).sha256[:16], name, name)
    return name, _store(path, name, digest, verified, f"imported from {path.resolve()}", cache), verified


# ---------------------------------------------------------------------------------------------------- fetch
def _packaged_copy(entry: WeightSpec) -> Path | None:
    if not entry.packaged:
        return None
    import importlib.util

    package, _, relative = entry.packaged.partition("/")
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        return None
    candidate = Path(list(found.submodule_search_locations)[0]) / relative
    return candidate if candidate.is_file() else None


def fetch(names: list[str] | None = None, cache: Path | None = None) -> list[Path]:
    """Get weights `names` (default: all) into the cache, from an installed package's copy or by download, each
    checked against the manifest's checksum; files already cached and verified are kept."""
    cache = cache or weights_dir()
    paths = []
    for name in names or list(MANIFEST):
        entry = spec(name)
        record = _record(name, cache)
        if record is not None and record["verified"]:
            paths.append(cache / entry.filename)
            continue
        source = _packaged_copy(entry)
        origin = f"copied from the installed package ({source})"
        with tempfile.TemporaryDirectory(dir=cache if cache.is_dir() else None) as scratch:
            if source is None:
                source, origin = Path(scratch) / entry.filename, entry.url
                logger.info("downloading %s from %s", name, entry.url)
                try:
                    urllib.request.urlretrieve(entry.url, source)
                except OSError as error:
                    raise InvalidInputError(f"download of {name}", f"{entry.url} failed ({error})",
                                            "run this on a machine with internet access, then copy the cache "
                                            "folder or the file (`nvsc weights import FILE`)") from None
            digest = sha256_of(source)
            if not entry.checksum_matches(digest):
                raise InvalidInputError(f"download of {name}", f"sha256 {digest} is not the published "
                                                               f"{entry.sha256}", "retry; the file is corrupt")
            check_architecture(name, source)
            paths.append(_store(source, name, digest, True, origin, cache))
    return paths


def list_weights(cache: Path | None = None) -> list[dict]:
    """One row per manifest entry: name, file, present, verified, description."""
    cache = cache or weights_dir()
    rows = []
    for entry in MANIFEST.values():
        record = _record(entry.name, cache)
        rows.append({"name": entry.name, "file": entry.filename, "present": record is not None,
                     "verified": bool(record and record["verified"]), "description": entry.description})
    return rows
