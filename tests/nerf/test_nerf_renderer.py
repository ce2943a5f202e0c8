"""Volume rendering against closed forms and a float64 loop over samples, on analytic toy fields."""

import numpy as np
import pytest
import torch
from torch import nn

from nerf.fit import NeRFConfig
from nerf.occupancy import OccupancyConfig, OccupancyGrid
from nerf.renderer import composite, ray_box_intersection, render_rays, stratified_distances

BACKGROUND = (1.0, 0.9, 0.8)


class AnalyticField(nn.Module):
    """A field given by two numpy-compatible functions of position, in the box [-1, 1]^3."""

    def __init__(self, density_fn, color_fn):
        super().__init__()
        self.density_fn, self.color_fn = density_fn, color_fn
        self.register_buffer("aabb", torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]))

    def forward(self, positions):
        self.evaluated += len(positions)
        return self.density_fn(positions), self.color_fn(positions)

    def density(self, positions):
        return self.density_fn(positions), None

    evaluated = 0
    """Positions the renderer asked for so far."""


def unit(vectors):
    vectors = torch.tensor(vectors, dtype=torch.float32)
    return vectors / vectors.norm(dim=-1, keepdim=True)


def test_constant_density_box_matches_closed_form():
    sigma, color = 0.7, torch.tensor([0.2, 0.5, 0.9])
    field = AnalyticField(lambda x: torch.full(x.shape[:1], sigma), lambda x: color.expand(len(x), 3))
    origins = torch.tensor([[-3.0, 0.3, -0.2], [-3.0, -3.0, -3.0], [-3.0, -3.0, 0.5], [0.0, 0.0, 0.0],
                            [-3.0, 2.0, 0.0]])
    directions = unit([[1, 0, 0], [1, 1, 1], [1, 1, 0], [1, 0, 0], [1, 0, 0]])
    # Chords through [-1, 1]^3 known by hand: an edge-to-edge axis, the main diagonal, a face diagonal, from the
    # centre to a face, and a ray that misses the box.
    chord = np.array([2.0, 2.0 * np.sqrt(3.0), 2.0 * np.sqrt(2.0), 1.0, 0.0])
    transmittance = np.exp(-sigma * chord)[:, None]
    expected = color.double().numpy() * (1 - transmittance) + np.array(BACKGROUND) * transmittance
    for training in (False, True):
        rendered = render_rays(field, origins, directions, NeRFConfig(samples_per_ray=16, background=BACKGROUND),
                               training=training, generator=torch.Generator().manual_seed(0))
        np.testing.assert_allclose(rendered.double().numpy(), expected, atol=1e-5)


def test_two_coloured_slabs_composite_front_to_back():
    # Slabs z in [-0.5, 0) (colour a) and [0, 0.5) (colour b) align with the 8 bins of a ray along z through the
    # box, so the midpoint sum is exact: front slab first, the back slab behind its transmittance.
    sigma_a, sigma_b, thickness = 2.0, 5.0, 0.5
    color_a, color_b = np.array([0.9, 0.1, 0.1]), np.array([0.1, 0.2, 0.9])

    def density(x):
        z = x[:, 2]
        return torch.where((z >= -0.5) & (z < 0), sigma_a, 0.0) + torch.where((z >= 0) & (z < 0.5), sigma_b, 0.0)

    def color(x):
        return torch.where((x[:, 2:] < 0), torch.tensor(color_a, dtype=torch.float32),
                           torch.tensor(color_b, dtype=torch.float32))

    field = AnalyticField(density, color)
    origins = torch.tensor([[0.1, 0.2, -4.0], [0.1, 0.2, 4.0]])
    directions = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, -1.0]])
    rendered = render_rays(field, origins, directions, NeRFConfig(samples_per_ray=8, background=BACKGROUND),
                           training=False).double().numpy()
    ta, tb, bg = np.exp(-sigma_a * thickness), np.exp(-sigma_b * thickness), np.array(BACKGROUND)
    upward = color_a * (1 - ta) + ta * color_b * (1 - tb) + ta * tb * bg
    downward = color_b * (1 - tb) + tb * color_a * (1 - ta) + ta * tb * bg
    np.testing.assert_allclose(rendered, np.stack([upward, downward]), atol=1e-5)


def smooth_density(x):
    return 4.0 * torch.exp(-3.0 * ((x - torch.tensor([0.2, -0.1, 0.3], dtype=x.dtype)) ** 2).sum(-1))


def smooth_color(x):
    return 0.5 + 0.4 * torch.sin(torch.stack([3 * x[:, 0], 2 * x[:, 1] + x[:, 2], x[:, 0] - 4 * x[:, 2]], dim=-1))


def test_render_matches_float64_loop_over_samples():
    generator = torch.Generator().manual_seed(1)
    origins = 3.0 * unit(torch.randn(12, 3, generator=generator).tolist())
    targets = 0.8 * (torch.rand(12, 3, generator=generator) * 2 - 1)
    directions = unit((targets - origins).tolist())
    samples = 24
    rendered = render_rays(AnalyticField(smooth_density, smooth_color), origins, directions,
                           NeRFConfig(samples_per_ray=samples, background=BACKGROUND, eval_chunk=7), training=False)
    for ray in range(len(origins)):
        o, d = origins[ray].double(), directions[ray].double()
        # Box entry and exit by scanning the line densely (a second way to find the chord).
        t = torch.linspace(0, 6, 200001, dtype=torch.float64)
        inside = ((o + t[:, None] * d).abs() <= 1).all(-1)
        near, far = t[inside].min().item(), t[inside].max().item()
        delta = (far - near) / samples
        color, transmittance = np.zeros(3), 1.0
        for i in range(samples):
            x = (o + (near + (i + 0.5) * delta) * d)[None]
            alpha = 1 - np.exp(-smooth_density(x).item() * delta)
            color += transmittance * alpha * smooth_color(x)[0].numpy()
            transmittance *= 1 - alpha
        color += transmittance * np.array(BACKGROUND)
        np.testing.assert_allclose(rendered[ray].double().numpy(), color, atol=2e-4)


def test_composite_weights_and_accumulation():
    sigma = torch.tensor([[0.0, 1.0, 3.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    rgb = torch.rand(2, 3, 3, dtype=torch.float64)
    color, accumulation = composite(sigma, rgb, torch.tensor([[0.5], [0.5]], dtype=torch.float64),
                                    torch.tensor(BACKGROUND, dtype=torch.float64))
    alpha = 1 - np.exp(-sigma[0].numpy() * 0.5)
    weights = alpha * np.array([1, 1 - alpha[0], (1 - alpha[0]) * (1 - alpha[1])])
    np.testing.assert_allclose(accumulation.numpy(), [weights.sum(), 0.0], atol=1e-12)
    np.testing.assert_allclose(color[0].numpy(), weights @ rgb[0].numpy() + (1 - weights.sum()) * np.array(BACKGROUND))
    np.testing.assert_allclose(color[1].numpy(), BACKGROUND)


def test_ray_box_intersection_and_stratified_bins():
    origins = torch.tensor([[-2.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.0, 3.0, 0.0]])
    directions = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])
    near, far = ray_box_intersection(origins, directions, torch.tensor([[-1.0] * 3, [1.0] * 3]))
    np.testing.assert_allclose(near.numpy(), [1.0, 0.0, 0.0])
    np.testing.assert_allclose(far.numpy(), [3.0, 1.5, 0.0])
    distances, delta = stratified_distances(near, far, 4, True, torch.Generator().manual_seed(0))
    bin_index = torch.floor((distances - near[:, None]) / delta.clamp_min(1e-12))
    assert torch.equal(bin_index[:2], torch.arange(4.0).expand(2, 4)), "one jittered sample in each bin"
    assert torch.all(distances[2] == 0.0)


@pytest.mark.parametrize("chunk", [1, 5, 1000])
def test_eval_chunks_do_not_change_the_result(chunk):
    field = AnalyticField(smooth_density, smooth_color)
    origins = torch.tensor([[-3.0, 0.1, 0.2]]).repeat(11, 1)
    directions = unit((torch.rand(11, 3, generator=torch.Generator().manual_seed(2)) - 0.5 - origins).tolist())
    whole = render_rays(field, origins, directions, NeRFConfig(samples_per_ray=9, eval_chunk=10_000), False)
    chunked = render_rays(field, origins, directions, NeRFConfig(samples_per_ray=9, eval_chunk=chunk), False)
    torch.testing.assert_close(chunked, whole)


def block_density(x):
    """Density 30 in the block [-0.25, 0.5)^3, whose faces lie on the cell faces of a 16^3 grid over [-1, 1]^3."""
    inside = ((x >= -0.25) & (x < 0.5)).all(dim=-1)
    return torch.where(inside, 30.0, 0.0)


def test_occupancy_grid_finds_the_block_and_skipping_changes_nothing():
    field = AnalyticField(block_density, smooth_color)
    grid = OccupancyGrid(OccupancyConfig(resolution=16), field.aabb)
    grid.update(field, step_size=0.1, generator=torch.Generator().manual_seed(0))
    centres = -1 + (grid.cell_coords + 0.5) / 16 * 2
    np.testing.assert_array_equal(grid.occupied.numpy(), block_density(centres).numpy() > 0)
    assert grid.occupied_fraction() == pytest.approx(6**3 / 16**3)
    generator = torch.Generator().manual_seed(3)
    origins = 3.0 * unit(torch.randn(64, 3, generator=generator).tolist())
    directions = unit((0.6 * torch.rand(64, 3, generator=generator) - 0.3 - origins).tolist())
    config = NeRFConfig(samples_per_ray=32, background=BACKGROUND)
    for training in (False, True):
        field.evaluated = 0
        skipped = render_rays(field, origins, directions, config, training, torch.Generator().manual_seed(1), grid)
        evaluated_with_grid = field.evaluated
        full = render_rays(field, origins, directions, config, training, torch.Generator().manual_seed(1))
        torch.testing.assert_close(skipped, full, rtol=0, atol=1e-6)
        assert evaluated_with_grid < 0.5 * field.evaluated


def test_early_termination_stops_at_an_opaque_wall():
    """Behind an opaque wall nothing is evaluated, and the colour equals the composite of every sample."""
    field = AnalyticField(lambda x: torch.where(x[:, 2] < -0.5, 200.0, 1.0), smooth_color)
    origins = torch.tensor([[0.1 * i, -0.2, -3.0] for i in range(5)])
    directions = torch.tensor([[0.0, 0.0, 1.0]] * 5)
    samples = 64
    rendered = render_rays(field, origins, directions, NeRFConfig(samples_per_ray=samples, background=BACKGROUND),
                           training=False)
    assert field.evaluated <= 5 * 24, "the 16 samples before the wall plus one segment of 8, per ray"
    near, far = ray_box_intersection(origins, directions, field.aabb)
    distances, delta = stratified_distances(near.double(), far.double(), samples, False)
    positions = (origins.double()[:, None] + distances[..., None] * directions.double()[:, None]).view(-1, 3)
    sigma, rgb = field.density_fn(positions), field.color_fn(positions)
    expected, _ = composite(sigma.view(5, samples), rgb.view(5, samples, 3), delta,
                            torch.tensor(BACKGROUND, dtype=torch.float64))
    np.testing.assert_allclose(rendered.double().numpy(), expected.numpy(), atol=1e-4)


def test_surface_of_an_opaque_wall_is_where_the_rays_meet_it():
    """The expected surface point of rays hitting an opaque wall z = -0.5 lies on the wall (to within a bin), and
    a ray through empty space has no opacity; the points are the compositing weights' mean of the samples."""
    from nerf.renderer import render_surface

    wall = AnalyticField(lambda x: torch.where(x[:, 2] > -0.5, 500.0, 0.0), smooth_color)
    origins = torch.tensor([[0.1 * i, -0.2, -3.0] for i in range(4)] + [[-3.0, 0.0, 0.0]])
    directions = torch.tensor([[0.0, 0.0, 1.0]] * 4 + [[0.0, 1.0, 0.0]])  # the last ray misses the box
    config = NeRFConfig(samples_per_ray=128, background=BACKGROUND)
    points, opacity = render_surface(wall, origins, directions, config)
    np.testing.assert_allclose(opacity[:4].numpy(), 1.0, atol=1e-4)
    assert float(opacity[4]) == 0.0
    bin_length = 2.0 / 128
    np.testing.assert_allclose(points[:4, 2].numpy(), -0.5, atol=bin_length)
    np.testing.assert_allclose(points[:4, :2].numpy(), origins[:4, :2].numpy(), atol=1e-5)
