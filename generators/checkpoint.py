"""The X-UNet checkpoint folder: `config.json`, `model.safetensors` (raw weights), `ema.safetensors` (EMA weights).

safetensors holds nothing but named tensors, so loading a checkpoint from anywhere cannot run code. Every problem
with a folder is reported as `InvalidInputError` naming the file at fault, before a model is returned.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from generators.schedule import CosineLogSNRSchedule
from generators.xunet import XUNet, XUNetConfig
from scenes.errors import InvalidInputError

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
CONFIG_FILE, MODEL_FILE, EMA_FILE = "config.json", "model.safetensors", "ema.safetensors"
ARCHITECTURES = {"xunet": (XUNet, XUNetConfig)}


def save_checkpoint(folder: Path, model: XUNet, ema_model: XUNet, model_config: XUNetConfig, step: int) -> Path:
    """Write the checkpoint into `folder` atomically (a complete folder or the previous one, never half of one)."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    schedule = CosineLogSNRSchedule(model_config.logsnr_min, model_config.logsnr_max)
    config = {"format_version": FORMAT_VERSION, "architecture": "xunet", "model": model_config.to_dict(),
              "schedule": schedule.to_dict(), "image_size": model_config.image_size, "step": int(step)}
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        (staging / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        for file, module in ((MODEL_FILE, model), (EMA_FILE, ema_model)):
            state = {name: tensor.detach().cpu().contiguous() for name, tensor in module.state_dict().items()}
            save_file(state, str(staging / file), metadata={"format_version": str(FORMAT_VERSION)})
        os.chmod(staging, 0o755)
        if folder.exists():
            # A directory cannot be replaced while it holds files: move the old one aside, then swap in the new.
            previous = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old.", dir=folder.parent))
            os.replace(folder, previous / "checkpoint")
            os.replace(staging, folder)
            shutil.rmtree(previous)
        else:
            os.replace(staging, folder)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    logger.info("saved checkpoint of step %d to %s", step, folder)
    return folder


def read_config(folder: Path) -> dict:
    """The checkpoint's parsed config.json, checked for format version and architecture."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InvalidInputError(str(folder), "checkpoint folder does not exist",
                                "pass a folder written by generators.training.train_generator")
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise InvalidInputError(str(path), "file is missing", "pass a complete checkpoint folder")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InvalidInputError(str(path), f"not valid JSON ({error})", "restore the file from the training run")
    if not isinstance(config, dict) or config.get("format_version") != FORMAT_VERSION:
        version = config.get("format_version") if isinstance(config, dict) else None
        raise InvalidInputError(str(path), f"unknown format_version {version!r}",
                                f"use a checkpoint of format_version {FORMAT_VERSION} or a matching nvsc version")
    if config.get("architecture") not in ARCHITECTURES:
        raise InvalidInputError(str(path), f"unknown architecture {config.get('architecture')!r}",
                                f"use one of: {', '.join(ARCHITECTURES)}")
    return config


def _load_weights(path: Path, model: torch.nn.Module, device: str | torch.device) -> None:
    if not path.is_file():
        raise InvalidInputError(str(path), "file is missing", "pass a complete checkpoint folder")
    try:
        state = load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError) as error:
        raise InvalidInputError(str(path), f"not a readable safetensors file ({error})",
                                "the file is truncated or corrupt: copy it again or retrain") from error
    expected = model.state_dict()
    missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or extra:
        raise InvalidInputError(str(path), f"{len(missing)} missing keys (first: {missing[:3]}) and {len(extra)} "
                                           f"unexpected keys (first: {extra[:3]})",
                                "use weights that match the model in config.json")
    wrong = [f"{name} {list(state[name].shape)} vs {list(tensor.shape)}" for name, tensor in expected.items()
             if state[name].shape != tensor.shape]
    if wrong:
        raise InvalidInputError(str(path), f"{len(wrong)} tensors have the wrong shape (first: {wrong[:3]})",
                                "use weights that match the model in config.json")
    model.load_state_dict(state)


def load_checkpoint(folder: Path, device: str | torch.device = "cpu", use_ema: bool = True
                    ) -> tuple[XUNet, XUNetConfig]:
    """The X-UNet (in eval mode, on `device`) and its config; EMA weights unless `use_ema` is False."""
    folder = Path(folder)
    config = read_config(folder)
    model_class, config_class = ARCHITECTURES[config["architecture"]]
    if not isinstance(config.get("model"), dict):
        raise InvalidInputError(str(folder / CONFIG_FILE), "has no \"model\" section",
                                "write the checkpoint with generators.checkpoint.save_checkpoint")
    try:
        model_config = config_class.from_dict(config["model"], source=str(folder / CONFIG_FILE))
    except TypeError as error:
        raise InvalidInputError(str(folder / CONFIG_FILE), f"invalid model config ({error})",
                                "write the checkpoint with generators.checkpoint.save_checkpoint") from error
    model = model_class(model_config)
    _load_weights(folder / (EMA_FILE if use_ema else MODEL_FILE), model, "cpu")
    return model.to(device).eval(), model_config
