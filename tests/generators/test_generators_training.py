"""Training: view pairs, EMA, the diffusion loss going down, and a run that writes a loadable checkpoint."""

import logging

import numpy as np
import pytest
import torch

from generators.checkpoint import load_checkpoint
from generators.schedule import CosineLogSNRSchedule
from generators.training import TrainConfig, diffusion_loss, ema_decay_at, train_generator, update_ema
from generators.view_pairs import ViewPairs
from tests.generators.micro_model import MICRO, make_scenes
from generators.xunet import XUNet
from scenes.errors import InvalidInputError


def test_view_pairs_enumerate_distinct_views_of_one_scene_and_resize():
    scenes = make_scenes(2, 3, 16)
    pairs = ViewPairs(scenes, image_size=8)
    assert len(pairs) == 2 * 3 * 2
    seen = {pairs.pair(i) for i in range(len(pairs))}
    assert len(seen) == len(pairs) and all(cond != target for _, cond, target in seen)
    item = pairs[len(pairs) - 1]
    scene, cond, target = pairs.pair(len(pairs) - 1)
    assert item["cond_image"].shape == (3, 8, 8) and item["cond_image"].min() >= -1 and item["cond_image"].max() <= 1
    expected = scenes[scene].images[target].reshape(8, 2, 8, 2, 3).mean(axis=(1, 3)) * 2 - 1  # 2x2 box = area resize
    np.testing.assert_allclose(item["target_image"].permute(1, 2, 0).numpy(), expected, atol=1e-5)
    torch.testing.assert_close(item["cond_c2w"], torch.tensor(scenes[scene].cameras.c2w[cond], dtype=torch.float32))
    torch.testing.assert_close(item["intrinsics"], torch.tensor([9.6, 9.6, 4.0, 4.0]))


def test_view_pairs_reject_single_view_scenes():
    with pytest.raises(InvalidInputError, match=r"scenes\[0\]"):
        ViewPairs([make_scenes(1, 3, 8)[0].subset([0])], 8)


def test_ema_update_and_decay_ramp():
    torch.manual_seed(0)
    model, ema = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    before = [p.detach().clone() for p in ema.parameters()]
    update_ema(ema, model, 0.9)
    for old, new, target in zip(before, ema.parameters(), model.parameters()):
        torch.testing.assert_close(new, 0.9 * old + 0.1 * target)
    assert ema_decay_at(0, 0.999) == pytest.approx(0.1) and ema_decay_at(90, 0.999) == pytest.approx(91 / 100)
    assert ema_decay_at(10 ** 6, 0.999) == 0.999


def fixed_batch(size=8):
    pairs = ViewPairs(make_scenes(1, 4, size), size)
    items = [pairs[i] for i in range(4)]
    return {name: torch.stack([item[name] for item in items]) for name in items[0]}


def test_a_few_steps_decrease_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    model, schedule, batch = XUNet(MICRO), CosineLogSNRSchedule(), fixed_batch()

    def evaluate():  # same noise levels, noise and dropout decisions every time
        with torch.no_grad():
            return diffusion_loss(model.eval(), batch, schedule, 0.1, torch.Generator().manual_seed(123)).item()

    initial = evaluate()
    assert initial == pytest.approx(1.0, abs=0.35)  # zero-initialised output: loss = mean(eps^2)
    optimizer, generator = torch.optim.AdamW(model.parameters(), lr=3e-3), torch.Generator().manual_seed(0)
    for _ in range(30):
        model.train()
        loss = diffusion_loss(model, batch, schedule, 0.1, generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert evaluate() < 0.7 * initial


def test_train_generator_writes_a_loadable_deterministic_checkpoint(tmp_path, caplog):
    scenes = make_scenes(2, 3, 16)
    config = TrainConfig(steps=4, batch_size=3, lr=1e-3, warmup_steps=2, checkpoint_every=3, seed=5, device="cpu")
    with caplog.at_level(logging.INFO, logger="generators"):
        first = train_generator(scenes, MICRO, config, tmp_path / "a")
    second = train_generator(scenes, MICRO, config, tmp_path / "b")
    assert first == tmp_path / "a" and "loss" in caplog.text
    model_a, config_a = load_checkpoint(first, use_ema=False)
    model_b, _ = load_checkpoint(second, use_ema=False)
    ema_a, _ = load_checkpoint(first)
    assert config_a == MICRO
    for (name, a), b in zip(model_a.state_dict().items(), model_b.state_dict().values()):
        assert torch.equal(a, b), f"{name} differs between two runs with the same seed"
    assert any(not torch.equal(a, e) for a, e in zip(model_a.parameters(), ema_a.parameters()))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]


def test_train_config_rejects_bad_values_before_training():
    with pytest.raises(InvalidInputError, match="steps"):
        TrainConfig(steps=0)
    with pytest.raises(InvalidInputError, match="ema_decay"):
        TrainConfig(ema_decay=1.0)
    with pytest.raises(InvalidInputError, match="cuda_graphs.*without compile"):
        TrainConfig(cuda_graphs=True)


def test_cuda_graphs_are_asked_for_only_where_they_can_run():
    from generators.training import TrainingRun

    cpu = torch.device("cpu")
    # The default replays graphs only for a compiled step in one CUDA process: on the CPU it stays off.
    assert not TrainingRun(MICRO, TrainConfig(steps=1, batch_size=2, compile=True), cpu).cuda_graphs
    with pytest.raises(InvalidInputError, match="cuda_graphs.*one CUDA process"):
        TrainingRun(MICRO, TrainConfig(steps=1, batch_size=2, compile=True, cuda_graphs=True), cpu)


def test_device_pair_batches_draw_the_pairs_of_view_pairs():
    from generators.view_pairs import DevicePairBatches

    pairs = ViewPairs(make_scenes(3, 4, 8), 8)
    batches = DevicePairBatches(pairs, "cpu")
    batch = batches.sample(64, torch.Generator().manual_seed(0))
    assert batch["cond_image"].shape == (64, 3, 8, 8) and batch["cond_image"].dtype == torch.float32
    matched = 0
    for i in range(64):  # every drawn pair is one of ViewPairs' pairs, images equal up to 8-bit rounding
        for index in range(len(pairs)):
            item = pairs[index]
            if torch.equal(item["cond_c2w"], batch["cond_c2w"][i]) and torch.equal(item["target_c2w"],
                                                                                  batch["target_c2w"][i]):
                torch.testing.assert_close(batch["cond_image"][i], item["cond_image"], atol=0.5 / 127.5 + 1e-6,
                                           rtol=0)
                torch.testing.assert_close(batch["target_image"][i], item["target_image"], atol=0.5 / 127.5 + 1e-6,
                                           rtol=0)
                torch.testing.assert_close(batch["intrinsics"][i], item["intrinsics"])
                matched += 1
                break
    assert matched == 64
    assert all(not torch.equal(c, t) for c, t in zip(batch["cond_c2w"], batch["target_c2w"]))
    many = batches.sample(2000, torch.Generator().manual_seed(1))
    drawn = {(tuple(c.flatten().tolist()), tuple(t.flatten().tolist()))
             for c, t in zip(many["cond_c2w"], many["target_c2w"])}
    assert len(drawn) == len(pairs)  # uniform over all 3 * 4 * 3 ordered pairs: all of them turn up


def test_tensorboard_gets_loss_lr_throughput_and_a_sample_grid(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = TrainConfig(steps=4, batch_size=2, warmup_steps=4, checkpoint_every=4, log_every=2, device="cpu")
    train_generator(make_scenes(1, 3, 8), MICRO, config, tmp_path / "ckpt", log_dir=tmp_path / "tb")
    events = EventAccumulator(str(tmp_path / "tb")).Reload()
    assert set(events.Tags()["scalars"]) == {"train/loss", "train/lr", "train/images_per_s"}
    assert [e.step for e in events.Scalars("train/lr")] == [2, 4]
    assert [e.value for e in events.Scalars("train/lr")] == pytest.approx([config.lr_at(2), config.lr_at(4)])
    assert events.Tags()["images"] == ["ema/cond_target_noisy_x0"]


def test_resuming_into_a_folder_of_another_model_is_refused(tmp_path):
    import dataclasses

    config = TrainConfig(steps=2, batch_size=2, checkpoint_every=2, device="cpu")
    train_generator(make_scenes(1, 3, 8), MICRO, config, tmp_path / "ckpt")
    with pytest.raises(InvalidInputError, match="config.json"):
        train_generator(make_scenes(1, 3, 8), dataclasses.replace(MICRO, ch=16), dataclasses.replace(config, steps=4),
                        tmp_path / "ckpt")


def test_permute_colours_permutes_both_views_of_a_pair_alike_and_keeps_grey():
    from generators.view_pairs import permute_colours

    generator = torch.Generator().manual_seed(0)
    batch = {"cond_image": torch.rand(16, 3, 4, 4), "target_image": torch.rand(16, 3, 4, 4),
             "cond_c2w": torch.eye(4).expand(16, 4, 4)}
    batch["cond_image"][:, :, 0, 0] = 1.0  # a white pixel
    out = permute_colours(batch, generator)
    assert out["cond_c2w"] is batch["cond_c2w"]
    orders = set()
    for i in range(16):
        order = [int((batch["cond_image"][i] - out["cond_image"][i, c]).abs().flatten(1).sum(1).argmin())
                 for c in range(3)]
        assert sorted(order) == [0, 1, 2]
        torch.testing.assert_close(out["target_image"][i], batch["target_image"][i, order])
        orders.add(tuple(order))
    assert len(orders) > 1 and (out["cond_image"][:, :, 0, 0] == 1.0).all()


def test_the_v_loss_is_the_eps_mse_weighted_by_one_over_alpha_squared():
    from generators.training import loss_on

    schedule = CosineLogSNRSchedule()
    generator = torch.Generator().manual_seed(0)
    batch = {"target_image": torch.rand(4, 3, 8, 8) * 2 - 1, "cond_image": torch.rand(4, 3, 8, 8),
             "cond_c2w": torch.eye(4).expand(4, 4, 4), "target_c2w": torch.eye(4).expand(4, 4, 4),
             "intrinsics": torch.tensor([8.0, 8.0, 4.0, 4.0]).expand(4, 4)}
    noise = {"t": torch.tensor([0.1, 0.4, 0.6, 0.9]), "eps": torch.randn(4, 3, 8, 8, generator=generator),
             "keep": torch.ones(4)}
    eps_hat = torch.randn(4, 3, 8, 8, generator=generator)
    model = lambda z, *args, **kwargs: eps_hat  # noqa: E731
    logsnr = schedule.logsnr(noise["t"])
    alpha, sigma = (s[:, None, None, None] for s in schedule.alpha_sigma(logsnr))
    z = alpha * batch["target_image"] + sigma * noise["eps"]
    v = alpha * noise["eps"] - sigma * batch["target_image"]
    x0_hat = (z - sigma * eps_hat) / alpha
    v_hat = alpha * eps_hat - sigma * x0_hat
    torch.testing.assert_close(loss_on(model, batch, noise, schedule, loss="v"), ((v - v_hat) ** 2).mean())
    torch.testing.assert_close(loss_on(model, batch, noise, schedule), ((noise["eps"] - eps_hat) ** 2).mean())
