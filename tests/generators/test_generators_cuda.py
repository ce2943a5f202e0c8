"""On the GPU: the X-UNet's compiled CUDA step (channels-last, FiLM and pose projections as matrix products,
GroupNorm handing on channels-last gradients, cross-attention on frame-swapped keys and values) against the eager model,
and the multi-view UNet's likewise."""

import copy
import dataclasses

import pytest
import torch

import tests.generators.test_generators_multiview as multiview
from generators.multiview_unet import MultiViewUNet
from generators.training import TrainConfig, TrainingRun, ema_decay_at, update_ema
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
    assert run.fused_update.updates == 60, run.fused_update.skipped  # the graphs' gradients went through the kernel
    torch._dynamo.reset()


def test_one_pass_update_matches_clipping_fused_adamw_and_ema_on_cuda():
    """TrainingRun's one-pass clipping + AdamW + EMA kernel, compiled for the GPU, against clip_grad_norm_, fused
    AdamW and update_ema on a copy, over steps with a new learning rate each and clipping on and off."""
    run = TrainingRun(CONFIG, TrainConfig(batch_size=2, lr=1e-3, steps=10, channels_last=True), torch.device("cuda"))
    assert run.fused_update.reason is None
    model, ema = copy.deepcopy(run.model), copy.deepcopy(run.ema)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    for step in range(1, 5):
        scale = 10.0 if step % 2 else 1e-4  # clipped, then not
        for weights, adamw in ((run.model, run.optimizer), (model, optimizer)):
            adamw.param_groups[0]["lr"] = 1e-3 * step
            generator = torch.Generator("cuda").manual_seed(step)
            for p in weights.parameters():  # the same gradients for both, in each parameter's own layout
                p.grad = torch.empty_like(p).copy_(scale * torch.randn(p.shape, device="cuda", generator=generator))
        assert run.fused_update.step(ema_decay_at(step, 0.999))
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        update_ema(ema, model, ema_decay_at(step, 0.999))
    for a, b in zip([*model.parameters(), *ema.parameters()], [*run.model.parameters(), *run.ema.parameters()]):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-7)
    for a, b in zip(model.parameters(), run.model.parameters()):
        for key in ("step", "exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(run.optimizer.state[b][key], optimizer.state[a][key], rtol=1e-5, atol=1e-9)
