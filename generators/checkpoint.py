"""Checkpoint folders: `config.json`, `model.safetensors` (raw weights), `ema.safetensors` (EMA weights), and
`train_state.pt` (optimizer, step, random states) while training may resume.

safetensors holds nothing but named tensors, so loading a checkpoint from anywhere cannot run code; the resume state
is read with `torch.load(weights_only=True)`, which refuses anything but tensors and plain containers. Every problem
with a folder is reported as `InvalidInputError` naming the file at fault, before a model is returned.

Writes are atomic: the new folder is filled under `.NAME.staging` and swapped in by two renames (old folder to
`.NAME.old`, staging to NAME). A process killed between the renames leaves `.NAME.old`, which `recover_checkpoint`
puts back, so a reader sees the previous checkpoint or the new one, never a mixture.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
import zipfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from generators.concat_unet import ConcatUNet
from generators.multiview_unet import MULTIVIEW_PRESETS, MultiViewUNet, MultiViewUNetConfig
from generators.schedule import CosineLogSNRSchedule
from generators.xunet import PRESETS, XUNet, XUNetConfig
from scenes.errors import InvalidInputError

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
CONFIG_FILE, MODEL_FILE, EMA_FILE, STATE_FILE = "config.json", "model.safetensors", "ema.safetensors", "train_state.pt"
#: Architecture name in config.json -> (model class, config class).
ARCHITECTURES = {"xunet": (XUNet, XUNetConfig), "concat_unet": (ConcatUNet, XUNetConfig),
                 "mvdiffusion": (MultiViewUNet, MultiViewUNetConfig)}


def presets_of(architecture: str) -> dict[str, XUNetConfig]:
    """The named model configurations an architecture can be built from (the pair models share the X-UNet's)."""
    if architecture not in ARCHITECTURES:
        raise InvalidInputError("architecture", f"unknown architecture {architecture!r}",
                                f"use one of: {', '.join(ARCHITECTURES)}")
    return MULTIVIEW_PRESETS if architecture == "mvdiffusion" else PRESETS


def architecture_of(model: torch.nn.Module) -> str:
    """The config.json name of `model`'s architecture."""
    for name, (model_class, _) in ARCHITECTURES.items():
        if type(model) is model_class:
            return name
    raise InvalidInputError("model", f"{type(model).__name__} is not a known architecture",
                            f"use one of: {', '.join(ARCHITECTURES)}")


def build_model(architecture: str, model_config: XUNetConfig) -> torch.nn.Module:
    """A freshly initialised model of the named architecture."""
    if architecture not in ARCHITECTURES:
        raise InvalidInputError("architecture", f"unknown architecture {architecture!r}",
                                f"use one of: {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[architecture][0](model_config)


def _sibling(folder: Path, suffix: str) -> Path:
    return folder.parent / f".{folder.name}.{suffix}"


def recover_checkpoint(folder: Path) -> None:
    """Finish or undo a save that was interrupted: restore `.NAME.old` if NAME is missing, drop leftovers."""
    folder, old, staging = Path(folder), _sibling(Path(folder), "old"), _sibling(Path(folder), "staging")
    if old.exists():
        if folder.exists():
            shutil.rmtree(old)
        else:
            os.replace(old, folder)
            logger.warning("restored %s from an interrupted checkpoint write", folder)
    if staging.exists():
        shutil.rmtree(staging)


def save_checkpoint(folder: Path, model: torch.nn.Module, ema_model: torch.nn.Module, model_config: XUNetConfig,
                    step: int, train_state: dict | None = None) -> Path:
    """Write the checkpoint into `folder` atomically (module docstring); `train_state` goes to train_state.pt."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    recover_checkpoint(folder)
    schedule = CosineLogSNRSchedule(model_config.logsnr_min, model_config.logsnr_max)
    config = {"format_version": FORMAT_VERSION, "architecture": architecture_of(model),
              "model": model_config.to_dict(), "schedule": schedule.to_dict(), "image_size": model_config.image_size,
              "step": int(step)}
    staging, old = _sibling(folder, "staging"), _sibling(folder, "old")
    staging.mkdir()
    try:
        try:
            _write_files(staging, config, model, ema_model, train_state)
        except (OSError, RuntimeError, SafetensorError) as error:  # a full disk, a quota: torch says RuntimeError
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise InvalidInputError(str(folder), f"the checkpoint of step {step} could not be written ({reason})",
                                    f"free space where {folder.parent} is, or write elsewhere; the previous "
                                    "checkpoint in the folder, if any, is kept and resumes") from error
        if folder.exists():
            os.replace(folder, old)  # a directory holding files cannot be replaced in one rename
        os.replace(staging, folder)
        if old.exists():
            shutil.rmtree(old)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    logger.info("saved checkpoint of step %d to %s", step, folder)
    return folder


def _write_files(staging: Path, config: dict, model: torch.nn.Module, ema_model: torch.nn.Module,
                 train_state: dict | None) -> None:
    (staging / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    for file, module in ((MODEL_FILE, model), (EMA_FILE, ema_model)):
        state = {name: tensor.detach().cpu().contiguous() for name, tensor in module.state_dict().items()}
        save_file(state, str(staging / file), metadata={"format_version": str(FORMAT_VERSION)})
    if train_state is not None:
        torch.save(train_state, staging / STATE_FILE)
    umask = os.umask(0)
    os.umask(umask)
    for file in staging.iterdir():  # the data must be on disk before the renames make it visible
        # safetensors writes its files owner-only (0600); give them the umask's modes, as the other files have,
        # so that everyone who shares the runs folder can read the weights.
        os.chmod(file, 0o666 & ~umask)
        with open(file, "rb") as handle:
            os.fsync(handle.fileno())


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


def load_weights(path: Path, model: torch.nn.Module) -> None:
    """Load a safetensors file into `model`, checking keys and shapes (CPU tensors, copied into the model)."""
    if not path.is_file():
        raise InvalidInputError(str(path), "file is missing", "pass a complete checkpoint folder")
    try:
        state = load_file(str(path), device="cpu")
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


def read_model_config(folder: Path, config: dict) -> XUNetConfig:
    """The model config stored in config.json (already read as `config`)."""
    path = str(Path(folder) / CONFIG_FILE)
    if not isinstance(config.get("model"), dict):
        raise InvalidInputError(path, "has no \"model\" section",
                                "write the checkpoint with generators.checkpoint.save_checkpoint")
    try:
        return ARCHITECTURES[config["architecture"]][1].from_dict(config["model"], source=path)
    except TypeError as error:
        raise InvalidInputError(path, f"invalid model config ({error})",
                                "write the checkpoint with generators.checkpoint.save_checkpoint") from error


def load_checkpoint(folder: Path, device: str | torch.device = "cpu", use_ema: bool = True,
                    architecture: str | None = None, image_size: int | None = None
                    ) -> tuple[torch.nn.Module, XUNetConfig]:
    """The model (in eval mode, on `device`) and its config; EMA weights unless `use_ema` is False.

    `architecture` and `image_size`, when given, are what the caller expects: a checkpoint of another architecture
    or resolution raises `InvalidInputError` naming config.json and both values.
    """
    folder = Path(folder)
    config = read_config(folder)
    path = folder / CONFIG_FILE
    if architecture is not None and config["architecture"] != architecture:
        raise InvalidInputError(str(path), f"holds a {config['architecture']!r} model, not the requested "
                                           f"{architecture!r}", "pass a checkpoint of that architecture")
    model_config = read_model_config(folder, config)
    if image_size is not None and model_config.image_size != image_size:
        raise InvalidInputError(str(path), f"was trained at {model_config.image_size}x{model_config.image_size} "
                                           f"pixels, not the requested {image_size}x{image_size}",
                                "use a checkpoint trained at that resolution or change the requested size")
    model = build_model(config["architecture"], model_config)
    load_weights(folder / (EMA_FILE if use_ema else MODEL_FILE), model)
    return model.to(device).eval(), model_config


def load_train_state(folder: Path) -> dict:
    """The resume state of train_state.pt (step, optimizer, random states), read without unpickling objects."""
    path = Path(folder) / STATE_FILE
    if not path.is_file():
        raise InvalidInputError(str(path), "file is missing", "resume only from a checkpoint written while training")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "weights only load failed" not in str(error).lower():
            raise InvalidInputError(str(path), f"not a readable resume state ({error})", "the file is truncated "
                                    "or corrupt: delete the checkpoint folder to start over") from error
        # torch's message goes on to advise weights_only=False, which would run whatever code the file holds.
        raise InvalidInputError(str(path), "holds objects other than tensors and plain containers, which nvsc "
                                "never unpickles (a checkpoint from anywhere must not run code)",
                                "use a resume state written by nvsc's training, or delete train_state.pt and "
                                "train into a new folder") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as error:
        raise InvalidInputError(str(path), f"not a readable resume state ({type(error).__name__}: "
                                           f"{str(error).splitlines()[0] if str(error) else ''})",
                                "the file is truncated or corrupt: delete the checkpoint folder to start over"
                                ) from error
    if not isinstance(state, dict) or "step" not in state:
        raise InvalidInputError(str(path), "has no step", "write it with generators.training")
    return state
