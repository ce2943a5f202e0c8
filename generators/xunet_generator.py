"""A trained X-UNet checkpoint behind the `ViewGenerator` contract (and its `Denoiser` as `.denoiser`)."""

from __future__ import annotations

from pathlib import Path

from generators.checkpoint import load_checkpoint
from generators.denoiser_generator import DenoiserViewGenerator, SamplingConfig
from generators.schedule import CosineLogSNRSchedule
from generators.training import resolve_device


class XUNetViewGenerator(DenoiserViewGenerator):
    """Generates target views from view 0 of the input scene with a named sampler (see `generators.samplers`)."""

    def __init__(self, checkpoint: Path, sampler: str, steps: int, guidance_weight: float, device: str = "cpu",
                 step_rule: str = "ancestral", markovian_window: int = 1):
        # Names and numbers are checked before the checkpoint is read.
        sampling = SamplingConfig(sampler=sampler, steps=int(steps), guidance_weight=float(guidance_weight),
                                  step_rule=step_rule, markovian_window=int(markovian_window))
        denoiser, self.config = load_checkpoint(Path(checkpoint), resolve_device(device), use_ema=True)
        super().__init__(denoiser, sampling, CosineLogSNRSchedule(self.config.logsnr_min, self.config.logsnr_max))


def checkpoint_denoiser(checkpoint: str | Path, device: str = "cpu"):
    """The EMA `Denoiser` of a checkpoint folder of `nvsc generator train`, with its own noise schedule: a factory
    for luigi.cfg, so that one checkpoint is sampled by every nvsc sampler (`<name>/stochastic`, `<name>/naive`)::

        [generator.small32]
        factory = generators.xunet_generator:checkpoint_denoiser
        options = {"checkpoint": "checkpoints/small-32"}
    """
    denoiser, config = load_checkpoint(Path(checkpoint), resolve_device(device), use_ema=True)
    denoiser.schedule = CosineLogSNRSchedule(config.logsnr_min, config.logsnr_max)
    return denoiser
