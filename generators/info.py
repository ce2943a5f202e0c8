"""What `nvsc generator info` prints: the size of architecture presets and of checkpoint folders."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import torch
from tabulate import tabulate

from generators.checkpoint import ARCHITECTURES, build_model, presets_of, read_config, read_model_config
from generators.xunet import XUNetConfig
from scenes.errors import InvalidInputError

def parameter_counts(architecture: str, config: XUNetConfig) -> dict[str, int]:
    """Parameters of a model in total and by part ("attention" and "film" cut across the UNet's levels).

    The model is built on the meta device: no memory is allocated, so the 454M-parameter preset counts instantly.
    """
    with torch.device("meta"):
        model = build_model(architecture, config)
    counts: Counter[str] = Counter()
    for name, parameter in model.named_parameters():
        counts["total"] += parameter.numel()
        if ".attention." in name:
            counts["attention"] += parameter.numel()
        elif ".film." in name:
            counts["film"] += parameter.numel()
    return dict(counts)


def _row(name: str, architecture: str, config: XUNetConfig, step: int | None = None) -> dict:
    counts = parameter_counts(architecture, config)
    return {"name": name, "architecture": architecture, "image size": config.image_size, "ch": config.ch,
            "ch_mult": ",".join(map(str, config.ch_mult)), "res blocks": config.num_res_blocks,
            "attention at": ",".join(map(str, config.attn_resolutions)), "emb": config.emb_ch,
            "parameters": counts["total"], "attention params": counts.get("attention", 0),
            "FiLM params": counts.get("film", 0), "step": "" if step is None else step}


def describe(names: list[str], architecture: str = "xunet") -> list[dict]:
    """One row per preset name (of `architecture`) or checkpoint folder (all presets when `names` is empty)."""
    rows = []
    presets = presets_of(architecture)
    for name in names or list(presets):
        if name in presets:
            rows.append(_row(name, architecture, presets[name]))
        elif Path(name).is_dir():
            config = read_config(Path(name))
            rows.append(_row(name, config["architecture"], read_model_config(Path(name), config), config.get("step")))
        else:
            other = [a for a in ARCHITECTURES if a != architecture and name in presets_of(a)]
            raise InvalidInputError(name, f"is neither a preset of {architecture} nor a checkpoint folder",
                                    f"add --architecture {other[0]}" if other else
                                    f"pass one of {', '.join(presets)} or a folder holding config.json")
    return rows


def format_table(rows: list[dict]) -> str:
    """The rows as a GitHub-style table with thousands separators."""
    return tabulate(rows, headers="keys", tablefmt="github", intfmt=",")

