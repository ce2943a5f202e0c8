"""Why stochastic conditioning and the Markovian sampler (k = 1) can give the same views: both draw their random
numbers in the same order (the initial noise of a view, one conditioning index per step, the ancestral noise), so
with a denoiser that ignores its conditioning image (an untrained X-UNet: its cross-frame attention starts at zero)
their views are identical; with one that reads it, the views differ from the second view on, and view 0 (conditioned
on the input by both) agrees."""

import torch

from tests.generators.test_generators_samplers import SCHEDULE, SIZE, RecordingDenoiser, run, scenes  # noqa: F401


class BlindDenoiser:
    """A denoiser that ignores its conditioning image and cameras: eps depends on z and logsnr only."""

    image_size, parameterization, supports_guidance = SIZE, "eps", True

    def __call__(self, z, logsnr, cond_image, cond_c2w, target_c2w, intrinsics, cond_mask=None):
        return 0.5 * z * torch.sigmoid(logsnr)[:, None, None, None]


def test_a_denoiser_blind_to_its_conditioning_gives_both_samplers_the_same_views(scenes):  # noqa: F811
    stochastic = run("stochastic", BlindDenoiser(), scenes, guidance_weight=3.0)
    markovian = run("markovian", BlindDenoiser(), scenes, guidance_weight=3.0, window=1)
    torch.testing.assert_close(stochastic, markovian, rtol=0, atol=0)


def test_a_denoiser_that_reads_its_conditioning_tells_them_apart(scenes):  # noqa: F811
    stochastic = run("stochastic", RecordingDenoiser(), scenes, guidance_weight=3.0)
    markovian = run("markovian", RecordingDenoiser(), scenes, guidance_weight=3.0, window=1)
    torch.testing.assert_close(stochastic[:, 0], markovian[:, 0], rtol=0, atol=0)  # both condition on the input
    assert (stochastic[:, 1:] - markovian[:, 1:]).abs().amax() > 1e-2
