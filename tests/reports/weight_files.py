"""Weight files of the metric networks' exact architectures and file formats, randomly initialised, so the real
loading path runs without the real (downloaded) weights. Their checksums cannot match the published ones."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import torch
import torchvision

from reports.fid import inception_architecture
from reports.lpips_score import lpips_heads
from reports.weights import MANIFEST


def _cheap_classifier(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same keys and shapes, with the classifier layers (never read by LPIPS; 90% of the bytes) stored as one
    broadcast value each, so the test files stay small and fast to write."""
    return {key: (torch.zeros(1).expand(value.shape) if key.startswith("classifier.") else value)
            for key, value in state.items()}


def make_weight_file(name: str, folder: Path, seed: int = 0, filename: str | None = None) -> Path:
    """A random state dict of weights `name` saved with `torch.save` as `folder/<filename or manifest name>`."""
    torch.manual_seed(seed)
    if name == "alexnet":
        state = _cheap_classifier(torchvision.models.alexnet(weights=None).state_dict())
    elif name == "vgg16":
        state = _cheap_classifier(torchvision.models.vgg16(weights=None).state_dict())
    elif name in ("lpips-alex", "lpips-vgg"):
        # The published heads are non-negative (lpips clamps them in training); so are these.
        state = {key: value.abs() for key, value in lpips_heads(name.removeprefix("lpips-")).state_dict().items()}
    elif name == "inception-v3-fid":
        state = inception_architecture().state_dict()
    else:
        raise KeyError(name)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (filename or MANIFEST[name].filename)
    torch.save(state, path)
    return path


@functools.cache
def random_weights_cache() -> Path:
    """A weights cache holding every manifest entry as a random file, imported through `import_file` (the path a
    person takes on an offline machine). Made once per test session."""
    from reports.weights import import_file

    root = Path(tempfile.mkdtemp(prefix="nvsc-random-weights-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    for name in MANIFEST:
        import_file(make_weight_file(name, root / "downloads"), cache=root / "cache")
    shutil.rmtree(root / "downloads")
    return root / "cache"
