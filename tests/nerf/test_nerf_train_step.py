"""The static-shape training step (what a CUDA graph replays) against the eager reference step: same draws, same
loss and gradients; whole rays leave the loss when the sample buffer overflows, and the buffer then grows;
determinism. On the GPU: a fit of CUDA graph steps against an eager fit."""

import dataclasses

import numpy as np
import pytest
import torch

from nerf.field import FieldConfig, HashGridField
from nerf.fit import NeRFConfig, fit_nerf, make_optimizer, render_views, scene_rays
from nerf.occupancy import OccupancyConfig, OccupancyGrid
from nerf.renderer import compact_indices, render_rays, render_training_rays
from nerf.train_step import CAPACITY_BUCKETS, CAPACITY_HEADROOM, TrainStep, ray_loss, sample_capacity
from tests.nerf.test_nerf_toyscene import make_toy_scene, psnr

CONFIG = NeRFConfig(field=FieldConfig(num_levels=4, log2_hashmap_size=10, base_resolution=4, max_resolution=32,
                                      hidden_dim=16, backend="torch"),
                    rays_per_batch=48, samples_per_ray=16, device="cpu",
                    occupancy=OccupancyConfig(resolution=8, warmup_steps=4, update_every=4))
SAMPLES = CONFIG.rays_per_batch * CONFIG.samples_per_ray


@pytest.fixture(scope="module")
def scene():
    return make_toy_scene(size=8, num_views=4)


def make_parts(scene, seed=0):
    """A field with random weights, an occupancy grid with a random third of its cells occupied, and the rays and
    colours of every pixel of `scene`."""
    torch.manual_seed(seed)
    field = HashGridField(CONFIG.field)
    with torch.no_grad():
        field.encoding.hash_table.normal_(0.0, 0.5)  # a field with structure, as after some training
    grid = OccupancyGrid(CONFIG.occupancy, field.aabb)
    grid.occupied.copy_(torch.rand(grid.occupied.shape, generator=torch.Generator().manual_seed(seed)) < 0.35)
    origins, directions = scene_rays(scene.cameras, torch.device("cpu"))
    return field, grid, origins, directions, torch.as_tensor(scene.images).reshape(-1, 3)


def loss_and_grads(field, loss):
    field.zero_grad(set_to_none=True)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in field.parameters()]


def reference_render(field, grid, origins, directions, pixels, seed):
    """The eager step's draws and colours: the pixel index [R] and colours [R, 3] (`render_rays`, dynamic)."""
    generator = torch.Generator().manual_seed(seed)
    index = torch.randint(0, len(pixels), (CONFIG.rays_per_batch,), generator=generator)
    return index, render_rays(field, origins[index], directions[index], CONFIG, True, generator, grid)


def static_render(field, grid, origins, directions, pixels, seed, capacity):
    generator = torch.Generator().manual_seed(seed)
    index = torch.randint(0, len(pixels), (CONFIG.rays_per_batch,), generator=generator)
    background = torch.tensor(CONFIG.background)
    return index, render_training_rays(field, origins[index], directions[index], CONFIG.samples_per_ray,
                                       background, generator, grid, capacity)


def test_static_step_has_the_reference_loss_and_gradients(scene):
    field, grid, origins, directions, pixels = make_parts(scene)
    index, color = reference_render(field, grid, origins, directions, pixels, seed=5)
    expected_loss, expected_grads = loss_and_grads(field, torch.nn.functional.mse_loss(color, pixels[index]))
    kept = None
    # A buffer of every sample (masked evaluation), and compacted buffers just large enough and roomier.
    for capacity in (SAMPLES, "exact", SAMPLES // 2):
        if capacity == "exact":
            capacity = kept
        _, render = static_render(field, grid, origins, directions, pixels, 5, capacity)
        kept = int(render.kept)
        assert 0.05 * SAMPLES < kept < 0.6 * SAMPLES, "the grid must skip a good part of the samples"
        assert bool(render.complete.all())
        loss, grads = loss_and_grads(field, ray_loss(render.color, pixels[index], render.complete))
        torch.testing.assert_close(loss, expected_loss, rtol=1e-6, atol=0)
        for grad, expected in zip(grads, expected_grads):
            torch.testing.assert_close(grad, expected, rtol=1e-5, atol=1e-9)


def test_overflow_leaves_whole_rays_out_of_the_loss(scene):
    field, grid, origins, directions, pixels = make_parts(scene)
    index, color = reference_render(field, grid, origins, directions, pixels, seed=7)
    _, full = static_render(field, grid, origins, directions, pixels, 7, SAMPLES)
    capacity = int(full.kept) // 2
    _, render = static_render(field, grid, origins, directions, pixels, 7, capacity)
    complete = render.complete
    # The buffer fills in ray order: the complete rays are a prefix, and they hold at most `capacity` samples.
    assert 0 < int(complete.sum()) < len(complete)
    assert torch.equal(complete, torch.arange(len(complete)) < int(complete.sum()))
    torch.testing.assert_close(render.color[complete], color[complete], rtol=0, atol=1e-6)
    # The loss (and its gradient) is the reference's over the complete rays only: no partly rendered ray enters.
    loss, grads = loss_and_grads(field, ray_loss(render.color, pixels[index], complete))
    expected_loss, expected_grads = loss_and_grads(
        field, torch.nn.functional.mse_loss(color[complete], pixels[index][complete]))
    torch.testing.assert_close(loss, expected_loss, rtol=1e-6, atol=0)
    for grad, expected in zip(grads, expected_grads):
        torch.testing.assert_close(grad, expected, rtol=1e-5, atol=1e-9)


def test_sample_capacity_buckets():
    bucket = SAMPLES // CAPACITY_BUCKETS
    assert sample_capacity(0, SAMPLES) == bucket
    assert sample_capacity(SAMPLES, SAMPLES) == SAMPLES
    for kept in (1, 100, 300, 500):
        capacity = sample_capacity(kept, SAMPLES)
        assert capacity % bucket == 0 and kept * CAPACITY_HEADROOM <= capacity < kept * CAPACITY_HEADROOM + bucket


def make_trainer(scene, static, seed=0):
    """A `TrainStep` set up as `fit_nerf` sets it up (CPU, so no graph), and its field and grid."""
    field, grid, origins, directions, pixels = make_parts(scene, seed)
    optimizer = make_optimizer(field, CONFIG, graphs=False)
    generator = torch.Generator().manual_seed(seed)
    trainer = TrainStep(field, optimizer, origins, directions, pixels, CONFIG, generator, grid, static, graph=False)
    return trainer, field, grid


def test_buffer_grows_after_an_overflow_and_shrinks_when_space_empties(scene):
    trainer, field, grid = make_trainer(scene, static=True)
    assert trainer.capacity == SAMPLES
    trainer.capacity = 64  # far fewer than the kept samples: most rays overflow
    trainer.run()
    dropped = trainer.dropped_rays()
    assert 0 < dropped < CONFIG.rays_per_batch
    peak = int(trainer.peak_kept)
    trainer.adapt()
    assert trainer.capacity >= sample_capacity(peak, SAMPLES) > peak and int(trainer.peak_kept) == 0
    foreseen = trainer.kept_by_next_step()
    trainer.run()
    assert int(trainer.peak_kept) == foreseen, "the probe draws what the next step draws"
    for _ in range(2):
        trainer.run()
    assert trainer.dropped_rays() == dropped, "the grown buffer holds every kept sample"
    trainer.adapt()  # (may grow a bucket more: the buffer keeps headroom over the most samples seen)
    # Space empties: about a quarter of the occupied cells remain.
    grid.occupied &= torch.rand(grid.occupied.shape, generator=torch.Generator().manual_seed(1)) < 0.25
    before = trainer.capacity
    trainer.run()
    trainer.adapt()
    assert trainer.capacity <= 0.75 * before
    trainer.run()
    assert trainer.dropped_rays() == dropped


def test_static_steps_are_deterministic_and_follow_the_reference_steps(scene):
    """Eight steps with grid updates between them: static steps twice give identical weights, and the eager
    reference steps (dynamic shapes, the same draws) give the same weights up to rounding."""
    results = []
    for static in (True, True, False):
        trainer, field, grid = make_trainer(scene, static)
        for step in range(8):
            trainer.set_learning_rate(1e-2 * 0.9**step)
            trainer.run()
            if grid.due(step):
                grid.update(field, 0.005, trainer.generator)
                trainer.adapt()
        assert trainer.dropped_rays() == 0
        assert not static or trainer.capacity < SAMPLES, "the static steps must have compacted their samples"
        results.append(torch.cat([p.detach().flatten() for p in field.parameters()]))
    assert torch.equal(results[0], results[1])
    torch.testing.assert_close(results[0], results[2], rtol=1e-4, atol=1e-6)


def test_compact_indices_is_nonzero_static():
    generator = torch.Generator().manual_seed(0)
    for fraction in (0.0, 0.3, 1.0):
        keep = torch.rand(500, generator=generator) < fraction
        for capacity in (1, 100, 150, 500):
            torch.testing.assert_close(compact_indices(keep, capacity),
                                       torch.nonzero_static(keep, size=capacity, fill_value=500).squeeze(1))


GPU_FIELDS = [
    # The torch encoding and a float32 MLP: only the order of floating-point sums differs.
    pytest.param(dataclasses.replace(CONFIG.field, backend="torch", mlp_precision="float32"), 2e-3, id="torch-fp32"),
    # The GPU default (Triton encoding, bfloat16 MLP).
    pytest.param(dataclasses.replace(CONFIG.field, backend="auto", mlp_precision="auto"), 2e-2, id="default")]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
@pytest.mark.parametrize("field_config, tolerance", GPU_FIELDS)
def test_graph_steps_draw_and_learn_as_eager_steps(scene, field_config, tolerance):
    """Twelve steps (grid updates after steps 3 and 7, re-capturing the graph): the loss of every step of the
    replayed graph equals the eager reference step's (other draws would change it by far more)."""
    config = dataclasses.replace(CONFIG, field=field_config, device="cuda", rays_per_batch=256, samples_per_ray=32)
    losses = {}
    half = torch.rand(config.occupancy.resolution**3, generator=torch.Generator().manual_seed(0)).cuda() < 0.5
    for graphs in (True, False):
        torch.manual_seed(0)
        field = HashGridField(config.field, "cuda")
        grid = OccupancyGrid(config.occupancy, field.aabb)
        origins, directions = scene_rays(scene.cameras, torch.device("cuda"))
        pixels = torch.as_tensor(scene.images, device="cuda").reshape(-1, 3)
        generator = torch.Generator(device="cuda").manual_seed(0)
        trainer = TrainStep(field, make_optimizer(field, config, graphs), origins, directions, pixels, config,
                            generator, grid, static=graphs, graph=graphs)
        losses[graphs] = []
        for step in range(12):
            trainer.set_learning_rate(config.lr * 0.9**step)
            trainer.run()
            losses[graphs].append(trainer.loss.item())
            if grid.due(step):
                grid.update(field, 0.005, generator)
                grid.occupied &= half  # at most half the cells stay: the buffer must shrink, a new capture
                trainer.adapt()
        if graphs:
            assert trainer.captures >= 2 and trainer.capacity < config.rays_per_batch * config.samples_per_ray
            assert trainer.dropped_rays() == 0
    np.testing.assert_allclose(losses[True], losses[False], rtol=tolerance)
    assert losses[True][-1] < losses[True][0], "the steps must learn"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_default_gpu_fit_replays_a_graph_and_matches_an_eager_fit(scene):
    config = dataclasses.replace(CONFIG, field=dataclasses.replace(CONFIG.field, backend="auto"), device="cuda",
                                 steps=80, rays_per_batch=256, samples_per_ray=32)
    graph = fit_nerf(scene, config)
    eager = fit_nerf(scene, dataclasses.replace(config, cuda_graphs=False))
    untrained = fit_nerf(scene, dataclasses.replace(config, steps=1))
    assert graph.cuda_graphs and not eager.cuda_graphs and graph.dropped_rays == 0
    assert graph.steps == eager.steps == 80
    scores = [psnr(render_views(fitted, scene.cameras), scene.images) for fitted in (graph, eager, untrained)]
    assert abs(scores[0] - scores[1]) < 1.0 and scores[0] > scores[2] + 3.0, scores
