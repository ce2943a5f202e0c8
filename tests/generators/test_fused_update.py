"""The one-pass clipping + AdamW + EMA kernel against clip_grad_norm_, torch's AdamW and update_ema, on the CPU
through Triton's interpreter (tests/generators/test_generators_cuda.py runs it compiled on the GPU)."""

import copy

import pytest
import torch

from generators.fused_update import BLOCK, ClippedAdamWEMA
from generators.training import ema_decay_at, update_ema
from nerf.encoding import triton_import_error

needs_triton = pytest.mark.skipif(triton_import_error() is not None,
                                  reason=f"`import triton` fails: {triton_import_error()}")


@pytest.fixture
def interpreted(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")


class Toy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.skip = torch.nn.Conv2d(3, 4, 1)
        self.norm = torch.nn.GroupNorm(2, 4)
        self.linear = torch.nn.Linear(64, 40)  # 2,560 weights: more than one program's block
        self.register_buffer("seen", torch.zeros(2))


assert 64 * 40 > BLOCK


def toy_run(fused: bool):
    """Model, EMA (weights apart from the model's, as after training), AdamW and, if `fused`, the one-pass update."""
    torch.manual_seed(0)
    model = Toy().to(memory_format=torch.channels_last)  # the conv weight channels-last, as in compiled training
    ema = copy.deepcopy(model).requires_grad_(False)
    for p in ema.parameters():
        p.add_(0.1 * torch.randn_like(p))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, foreach=False)
    return model, ema, optimizer, ClippedAdamWEMA(model, ema, optimizer, max_norm=1.0) if fused else None


def set_gradients(model, step):
    generator = torch.Generator().manual_seed(step)
    # Large gradients on even steps (clipped), small ones on odd steps (below the norm: not clipped).
    scale = 10.0 if step % 2 == 0 else 1e-3
    for p in model.parameters():
        grad = scale * torch.randn(p.shape, generator=generator)
        # In p's layout, as autograd hands it on; for the 1x1 convolution's channels-last weight that can be
        # strides that differ from the weight's in its dimensions of size 1, as here.
        p.grad = grad if p.is_contiguous() else torch.empty_like(p).copy_(grad)
    model.seen.fill_(step)


def take_step(run, step, lr=1e-2):
    model, ema, optimizer, update = run
    optimizer.param_groups[0]["lr"] = lr
    set_gradients(model, step)
    if update is None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        update_ema(ema, model, ema_decay_at(step, 0.999))
    else:
        assert update.step(ema_decay_at(step, 0.999))


def assert_same_runs(reference, fused):
    """Weights, EMA, buffers and AdamW state equal to float32 rounding (the kernel's bias corrections are float32,
    AdamW's eager ones float64)."""
    (model_a, ema_a, opt_a), (model_b, ema_b, opt_b) = reference[:3], fused[:3]
    for a, b in zip([*model_a.parameters(), *ema_a.parameters(), *ema_a.buffers()],
                    [*model_b.parameters(), *ema_b.parameters(), *ema_b.buffers()]):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-7)
    for p_a, p_b in zip(model_a.parameters(), model_b.parameters()):
        state_a, state_b = opt_a.state[p_a], opt_b.state[p_b]
        assert state_a.keys() == state_b.keys() == {"step", "exp_avg", "exp_avg_sq"}
        for key in state_a:
            torch.testing.assert_close(state_b[key], state_a[key], rtol=1e-5, atol=1e-9)
            assert state_b[key].dtype == state_a[key].dtype and state_b[key].stride() == state_a[key].stride()


@needs_triton
def test_one_pass_matches_clipping_adamw_and_ema(interpreted):
    reference, fused = toy_run(False), toy_run(True)
    assert fused[3].reason is None
    for step in range(1, 6):
        for run in (reference, fused):
            take_step(run, step, lr=1e-2 * step / 5)  # a new learning rate at every step, as during warm-up
        assert_same_runs(reference, fused)
    untouched = toy_run(False)[0]
    assert not any(torch.equal(a, b) for a, b in zip(reference[0].parameters(), untouched.parameters()))


@needs_triton
def test_one_pass_state_is_adamw_state_for_resume(interpreted):
    """The one-pass update's optimizer state resumes under plain AdamW, and the other way round."""
    reference, fused = toy_run(False), toy_run(True)
    for step in range(1, 4):
        take_step(reference, step)
        take_step(fused, step)
    resumed = []
    for source, with_kernel in ((fused, False), (reference, True)):
        model, ema = copy.deepcopy(source[0]), copy.deepcopy(source[1])
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, foreach=False)
        optimizer.load_state_dict(source[2].state_dict())
        resumed.append((model, ema, optimizer, ClippedAdamWEMA(model, ema, optimizer, 1.0) if with_kernel else None))
    for step in range(4, 6):
        for run in resumed:
            take_step(run, step)
    assert_same_runs(*resumed)


@needs_triton
def test_one_pass_leaves_what_it_cannot_update_to_the_eager_path(interpreted):
    model, ema, optimizer, update = toy_run(True)
    weights = [*model.parameters(), *ema.parameters()]
    before = [w.detach().clone() for w in weights]
    set_gradients(model, 1)
    model.linear.bias.grad = None  # AdamW skips it, weight decay included; the kernel cannot
    assert not update.step(0.9)
    set_gradients(model, 1)
    model.linear.weight.grad = torch.empty(64 * 40 + 1)[1:].view(40, 64)  # 4 bytes past an aligned address
    assert not update.step(0.9)
    assert all(torch.equal(a, b) for a, b in zip(before, weights)) and not optimizer.state


def test_one_pass_says_why_it_does_not_run_and_rejects_other_parameters():
    model, ema, _, update = toy_run(True)  # on the CPU, not interpreted
    assert "CUDA" in update.reason and not update.step(0.9)
    with pytest.raises(ValueError, match="all of the model's parameters"):
        ClippedAdamWEMA(model, ema, torch.optim.AdamW(model.conv.parameters()), 1.0)
    with pytest.raises(ValueError, match="EMA model's parameters"):
        ClippedAdamWEMA(model, torch.nn.Linear(2, 2), torch.optim.AdamW(model.parameters()), 1.0)


@needs_triton
def test_training_takes_the_one_pass_update_with_autograd_gradients(interpreted, monkeypatch):
    """TrainingRun's real gradients (channels-last) go through the kernel, and update as the eager path does."""
    from generators.training import TrainConfig, TrainingRun
    from generators.view_pairs import DevicePairBatches, ViewPairs
    from tests.generators.micro_model import MICRO, make_scenes

    config = TrainConfig(batch_size=4, steps=3, warmup_steps=1, lr=1e-2, channels_last=True)
    runs = [TrainingRun(MICRO, config, torch.device("cpu"))]
    monkeypatch.delenv("TRITON_INTERPRET")
    runs.append(TrainingRun(MICRO, config, torch.device("cpu")))
    assert runs[0].fused_update.reason is None and "CUDA" in runs[1].fused_update.reason
    batches = DevicePairBatches(ViewPairs(make_scenes(2, 3, 8), 8), "cpu")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    batch = batches.sample(4, torch.Generator().manual_seed(0))
    for run in runs:
        run.train_step(batch)
    fused, eager = runs
    # One step: the updates differ by rounding only (later steps feed it back through the gradients).
    for a, b in zip([*eager.model.parameters(), *eager.ema.parameters()],
                    [*fused.model.parameters(), *fused.ema.parameters()]):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-7)
    for _ in range(2):
        fused.train_step(batch)
    assert fused.fused_update.updates == 3 and eager.fused_update.updates == 0
