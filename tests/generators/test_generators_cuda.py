"""On the GPU: the X-UNet's compiled CUDA step (channels-last, FiLM and pose projections as matrix products,
GroupNorm handing on channels-last gradients, cross-attention on frame slices) against the eager model,
and the multi-view UNet's likewise."""

import dataclasses

import pytest
import torch

import tests.generators.test_generators_multiview as multiview
from generators.multiview_unet import MultiViewUNet
from generators.training import TrainConfig, TrainingRun
from generators.view_pairs import DevicePairBatches, ViewPairs
from generators.xunet import XUNet
from tests.generators.micro_model import MICRO, make_scenes
from tests.generators.test_generators_xunet import inputs, randomised

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
CONFIG = dataclasses.replace(MICRO, image_size=16, ch_mult=(1, 2, 2), attn_resolutions=(8,), ch=32, num_heads=4)


def assert_compiled_matches_eager(eager: torch.nn.Module, fresh: torch.nn.Module, kwargs: dict) -> None:
    """`fresh` (the same architecture) with eager's weights, channels-last and compiled as TrainingRun compiles it,
    against eager: outputs and every parameter's gradient, in full float32 on both sides."""
    torch._dynamo.reset()
    fresh = fresh.cuda().to(memory_format=torch.channels_last)
    fresh.load_state_dict(eager.state_dict())
    compiled = torch.compile(fresh, options={"force_layout_optimization": True})
    results = []
    for model, weights in ((eager, eager), (compiled, fresh)):
        out = model(**kwargs)
        out.square().mean().backward()
        results.append((out, [p.grad for p in weights.parameters()]))
    (out_eager, grads_eager), (out_compiled, grads_compiled) = results
    torch.testing.assert_close(out_compiled, out_eager, atol=1e-4, rtol=1e-3)
    for mine, theirs in zip(grads_compiled, grads_eager):
        torch.testing.assert_close(mine, theirs, atol=1e-4, rtol=1e-3)
    torch._dynamo.reset()


@pytest.fixture
def full_float32(monkeypatch):
    # TF32 rounding would differ between the eager and the compiled kernel choices.
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)


def test_compiled_channels_last_xunet_matches_the_eager_model_on_cuda(full_float32):
    names = ("z_t", "logsnr", "cond_image", "cond_c2w", "target_c2w", "intrinsics")
    kwargs = {name: value.cuda() for name, value in zip(names, inputs(4, 16))}
    assert_compiled_matches_eager(randomised(CONFIG).cuda(), XUNet(CONFIG), kwargs)


def test_compiled_channels_last_multiview_unet_matches_the_eager_model_on_cuda(full_float32, scene_with_depth):
    eager = multiview.randomised(MultiViewUNet(multiview.MICRO)).cuda()
    kwargs = {name: value.cuda() for name, value in multiview.inputs(*scene_with_depth).items()}
    assert_compiled_matches_eager(eager, MultiViewUNet(multiview.MICRO), kwargs)


def test_compiled_training_with_cuda_graphs_runs_and_learns():
    torch._dynamo.reset()
    device = torch.device("cuda")
    pairs = DevicePairBatches(ViewPairs(make_scenes(4, 6, 16), 16), device)
    run = TrainingRun(CONFIG, TrainConfig(batch_size=8, lr=2e-3, warmup_steps=5, steps=10 ** 9, compile=True),
                      device)
    assert run.cuda_graphs and torch.backends.cudnn.benchmark
    losses = [run.train_step(pairs.sample(8, run.data_generator)).item() for _ in range(60)]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-10:]) < sum(losses[:10])
    torch._dynamo.reset()
