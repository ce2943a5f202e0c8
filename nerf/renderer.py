"""Volume rendering of a position-only field along rays (NeRF, Mildenhall et al. 2020, Eq. 3).

Rays are clipped to the field's scene box and sampled at S stratified positions: one per equal bin, jittered
uniformly inside it while training (Eq. 2) and at the bin midpoint at evaluation. Compositing follows nerfstudio's
renderers: alpha_i = 1 - exp(-sigma_i delta_i), transmittance T_i = exp(-sum_{j<i} sigma_j delta_j) (an exclusive
cumulative sum), weights w_i = T_i alpha_i, and the background fills the transmittance left behind the last sample.
Empty space is skipped with an occupancy grid (`nerf/occupancy.py`) and, at evaluation, rays terminate early.
A training render also comes with static shapes (a fixed buffer for the kept samples) that a CUDA graph can
replay (`render_training_rays`, used by `nerf/train_step.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from nerf.field import HashGridField
    from nerf.fit import NeRFConfig
    from nerf.occupancy import OccupancyGrid


def ray_box_intersection(origins: Tensor, directions: Tensor, aabb: Tensor) -> tuple[Tensor, Tensor]:
    """Distances near [R], far [R] along rays [R, 3] where they enter and leave the box aabb [2, 3] (slab test).

    The segment starts no earlier than the ray origin; a ray that misses the box gets far == near, an empty
    segment that renders as pure background.
    """
    # A zero direction component would divide by zero: nudge it, keeping its sign, so the slab test sees +-inf.
    tiny = torch.where(directions >= 0, 1e-12, -1e-12).to(directions)
    safe = torch.where(directions.abs() < 1e-12, tiny, directions)
    t_lower = (aabb[0] - origins) / safe  # [R, 3]
    t_upper = (aabb[1] - origins) / safe
    near = torch.minimum(t_lower, t_upper).amax(dim=-1).clamp_min(0.0)
    far = torch.maximum(t_lower, t_upper).amin(dim=-1)
    return near, torch.maximum(far, near)


def stratified_distances(near: Tensor, far: Tensor, samples: int, training: bool,
                         generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Sample distances [R, S] (one per equal bin of [near, far]) and the bin length delta [R, 1]."""
    delta = ((far - near) / samples)[:, None]  # [R, 1]
    if training:
        offsets = torch.rand((near.shape[0], samples), generator=generator, device=near.device, dtype=near.dtype)
    else:
        offsets = torch.full((1, samples), 0.5, device=near.device, dtype=near.dtype)
    bins = torch.arange(samples, device=near.device, dtype=near.dtype)
    return near[:, None] + (bins + offsets) * delta, delta


def composite(sigma: Tensor, rgb: Tensor, delta: Tensor, background: Tensor) -> tuple[Tensor, Tensor]:
    """Alpha-composite samples along rays: colour [R, 3] and accumulated opacity [R].

    sigma [R, S] densities, rgb [R, S, 3] colours, delta [R, S] or [R, 1] sample lengths, background [3].
    """
    optical_depth = sigma * delta  # [R, S]
    alpha = 1.0 - torch.exp(-optical_depth)
    # Exclusive cumulative sum: the light reaching sample i has crossed samples 0..i-1 only.
    depth_before = torch.cumsum(optical_depth, dim=-1) - optical_depth
    weights = alpha * torch.exp(-depth_before)  # [R, S]
    accumulation = weights.sum(dim=-1)  # [R]
    color = (weights[..., None] * rgb).sum(dim=-2) + (1.0 - accumulation)[:, None] * background
    return color, accumulation


def _evaluate(field: HashGridField, positions: Tensor, keep: Tensor | None) -> tuple[Tensor, Tensor]:
    """Density [P] and colour [P, 3] at positions [P, 3]; where keep [P] is False the field is not evaluated and
    the sample gets density 0 (empty space, by the occupancy grid or outside the box). The number of kept samples
    decides a shape, so it is read back to the host: a sync, and no CUDA graph can hold this."""
    if keep is None:
        return field(positions)
    index = keep.nonzero().squeeze(1)  # [K]
    sigma, rgb = field(positions[index])
    zeros = positions.new_zeros(positions.shape[0])
    return zeros.index_copy(0, index, sigma.to(zeros.dtype)), \
        positions.new_zeros(positions.shape).index_copy(0, index, rgb.to(zeros.dtype))


def compact_indices(keep: Tensor, capacity: int) -> Tensor:
    """Indices [C] of the first C = `capacity` True entries of keep [P], in order, padded with P: what
    `torch.nonzero_static(keep, size=C, fill_value=P)` gives, from a scan and a scatter of fixed shapes (no host
    sync, so a CUDA graph can hold it)."""
    num_samples = keep.shape[0]
    position = torch.cumsum(keep, dim=0) - 1  # [P] buffer slot of each kept sample
    every = torch.arange(num_samples, device=keep.device)
    # Samples not kept, and kept ones beyond the buffer, go to slots of their own behind it: no two writes collide.
    slot = torch.where(keep & (position < capacity), position, capacity + every)
    buffer = torch.full((capacity + num_samples,), num_samples, dtype=torch.int64, device=keep.device)
    return buffer.scatter_(0, slot, every)[:capacity]


def _evaluate_static(field: HashGridField, positions: Tensor, keep: Tensor, capacity: int) -> tuple[Tensor, Tensor]:
    """`_evaluate` with shapes that do not depend on the data: density [P] and colour [P, 3] at positions [P, 3].

    capacity < P: the first `capacity` kept samples (in sample order) are compacted into a buffer of that fixed
    size and evaluated; kept samples beyond it get density 0 (the caller leaves their rays out of the loss).
    capacity >= P: every sample is evaluated and those not kept get density 0 (no gather, no scatter).
    """
    num_samples = positions.shape[0]
    if capacity >= num_samples:
        sigma, rgb = field(positions)
        # An empty sample has weight 0 in `composite`, so its colour (and the colour's gradient) never matters.
        return torch.where(keep, sigma.to(positions.dtype), 0.0), rgb.to(positions.dtype)
    index = compact_indices(keep, capacity)  # [C]
    # Unused buffer entries point at a dummy slot P behind the samples: evaluated at a real position (the clamp),
    # written to the dummy slot, which is cut off, so they change nothing and receive no gradient.
    sigma, rgb = field(positions[index.clamp(max=num_samples - 1)])
    sigma_all = positions.new_zeros(num_samples + 1).index_copy(0, index, sigma.to(positions.dtype))
    rgb_all = positions.new_zeros((num_samples + 1, 3)).index_copy(0, index, rgb.to(positions.dtype))
    return sigma_all[:num_samples], rgb_all[:num_samples]


def _sample_mask(positions: Tensor, delta: Tensor, grid: OccupancyGrid | None) -> Tensor | None:
    """Which samples [R, S] need the field: those in occupied cells on rays that cross the box (None: all)."""
    if grid is None or not grid.config.enabled:
        return None
    num_rays, samples = positions.shape[:2]
    return grid.query(positions.view(-1, 3)).view(num_rays, samples) & (delta > 0)


def ray_samples(field: HashGridField, origins: Tensor, directions: Tensor, samples: int, training: bool,
                generator: torch.Generator | None, grid: OccupancyGrid | None) -> tuple[Tensor, Tensor, Tensor | None]:
    """Sample positions [R, S, 3], bin lengths delta [R, 1], and which samples need the field [R, S] (None: all)."""
    near, far = ray_box_intersection(origins, directions, field.aabb)
    distances, delta = stratified_distances(near, far, samples, training, generator)  # [R, S], [R, 1]
    positions = origins[:, None, :] + distances[..., None] * directions[:, None, :]  # [R, S, 3]
    return positions, delta, _sample_mask(positions, delta, grid)


@dataclass
class TrainingRender:
    """Colours of a batch of training rays, and what the occupancy skipping did to it."""

    color: Tensor
    """Rendered colours [R, 3]."""
    complete: Tensor
    """bool [R]: the ray's every kept sample was evaluated. Only a static-shape render whose buffer was full has
    False entries; such rays must not enter the loss."""
    kept: Tensor
    """int64 []: samples in occupied cells (what a static-shape buffer must hold to leave no ray incomplete)."""


def render_training_rays(field: HashGridField, origins: Tensor, directions: Tensor, samples: int,
                         background: Tensor, generator: torch.Generator | None, grid: OccupancyGrid | None,
                         capacity: int | None = None) -> TrainingRender:
    """Training render of rays [R, 3] with jittered samples (`generator`'s draws), skipping empty cells of `grid`.

    capacity None: the reference, which evaluates exactly the kept samples (a host sync per call). capacity C:
    static shapes that a CUDA graph can replay (`_evaluate_static`); the kept samples of the first rays fill the
    buffer of C samples in ray order, and a ray whose kept samples do not all fit is marked incomplete (never
    rendered from a part of its samples).
    """
    positions, delta, keep = ray_samples(field, origins, directions, samples, True, generator, grid)
    num_rays = origins.shape[0]
    flat = positions.view(-1, 3)
    if keep is None:
        kept = torch.full((), num_rays * samples, dtype=torch.int64, device=origins.device)
        complete = torch.ones(num_rays, dtype=torch.bool, device=origins.device)
        sigma, rgb = field(flat)
    else:
        # Kept samples up to the end of each ray [R]: ray r fits a buffer of C samples iff its end is <= C.
        ends = keep.sum(dim=1).cumsum(dim=0)
        kept = ends[-1]
        if capacity is None:
            complete = torch.ones(num_rays, dtype=torch.bool, device=origins.device)
            sigma, rgb = _evaluate(field, flat, keep.view(-1))
        else:
            complete = ends <= capacity
            sigma, rgb = _evaluate_static(field, flat, keep.view(-1), capacity)
    color, _ = composite(sigma.view(num_rays, samples), rgb.view(num_rays, samples, 3), delta, background)
    return TrainingRender(color, complete, kept)


def _render_eval_chunk(field: HashGridField, origins: Tensor, directions: Tensor, samples: int,
                       background: Tensor, grid: OccupancyGrid | None, with_points: bool = False):
    positions, delta, keep = ray_samples(field, origins, directions, samples, False, None, grid)
    return _march_with_early_termination(field, positions, delta, keep, background, with_points)


#: Samples evaluated per round of ray marching at evaluation; rays whose transmittance has fallen below
#: `TERMINATION_TRANSMITTANCE` after a round are not marched further (instant-NGP's early termination, with the
#: same 1e-4: the colour it drops is below 1e-4 per channel, invisible in an 8-bit image).
MARCH_SEGMENT = 8
TERMINATION_TRANSMITTANCE = 1e-4


def _march_with_early_termination(field: HashGridField, positions: Tensor, delta: Tensor, keep: Tensor | None,
                                  background: Tensor, with_points: bool = False):
    """Front-to-back compositing of positions [R, S, 3] in segments of `MARCH_SEGMENT` samples, each over the rays
    still transmitting light; equal to `composite` over all samples up to the light dropped at termination.

    Returns colours [R, 3]; with `with_points`, also (weight-summed sample positions [R, 3], opacity [R]): the
    positions composited like colours, so points / opacity is the expected surface point of a ray."""
    num_rays, samples = positions.shape[:2]
    channels = 6 if with_points else 3
    values = positions.new_zeros((num_rays, channels))  # colour (and position) composited on black
    depth = positions.new_zeros(num_rays)  # optical depth crossed so far, per ray
    alive = torch.arange(num_rays, device=positions.device)  # [A] rays still marching
    for start in range(0, samples, MARCH_SEGMENT):
        segment = slice(start, min(start + MARCH_SEGMENT, samples))
        points = positions[alive, segment]  # [A, s, 3]
        length = points.shape[1]
        mask = None if keep is None else keep[alive, segment].reshape(-1)
        sigma, rgb = _evaluate(field, points.reshape(-1, 3), mask)
        ray_delta = delta[alive]  # [A, 1]
        sample_values = torch.cat([rgb.view(-1, length, 3), points], dim=-1) if with_points else \
            rgb.view(-1, length, 3)
        # A segment composited on black, then dimmed by the light that reached it (transmittance is a product).
        seg_values, _ = composite(sigma.view(-1, length), sample_values, ray_delta, values.new_zeros(channels))
        transmittance = torch.exp(-depth[alive])  # [A]
        values[alive] += transmittance[:, None] * seg_values
        depth[alive] += (sigma.view(-1, length) * ray_delta).sum(dim=-1)
        alive = alive[torch.exp(-depth[alive]) > TERMINATION_TRANSMITTANCE]
        if alive.numel() == 0:
            break
    color = values[:, :3] + torch.exp(-depth)[:, None] * background
    if with_points:
        return color, values[:, 3:], 1.0 - torch.exp(-depth)
    return color


def render_surface(field: HashGridField, origins: Tensor, directions: Tensor, config: NeRFConfig,
                   grid: OccupancyGrid | None = None) -> tuple[Tensor, Tensor]:
    """(expected surface points [R, 3], opacity [R]) of rays, at evaluation: the sample positions averaged with
    the compositing weights (the weights of the colour), divided by the opacity they sum to. Rays of low opacity
    hit nothing; their point is meaningless."""
    background = torch.as_tensor(config.background, dtype=origins.dtype, device=origins.device)
    points, opacity = [], []
    for i in range(0, origins.shape[0], config.eval_chunk):
        _, weighted, alpha = _render_eval_chunk(field, origins[i:i + config.eval_chunk],
                                                directions[i:i + config.eval_chunk], config.samples_per_ray,
                                                background, grid, with_points=True)
        points.append(weighted / alpha.clamp(min=1e-6)[:, None])
        opacity.append(alpha)
    if not points:
        return origins.new_zeros((0, 3)), origins.new_zeros(0)
    return torch.cat(points), torch.cat(opacity)


def render_rays(field: HashGridField, origins: Tensor, directions: Tensor, config: NeRFConfig, training: bool,
                generator: torch.Generator | None = None, grid: OccupancyGrid | None = None) -> Tensor:
    """Colours [R, 3] of rays with origins [R, 3] and unit directions [R, 3] (world space, on the field's device).

    Uses `config.samples_per_ray`, `config.background` and, at evaluation, `config.eval_chunk` rays at a time.
    `generator` draws the stratified jitter while training (None: torch's global generator). With an occupancy
    `grid`, samples in its empty cells are skipped. At evaluation rays stop once opaque (early termination).
    The direction only places samples along the ray; the field never sees it.
    """
    background = torch.as_tensor(config.background, dtype=origins.dtype, device=origins.device)
    if training:
        return render_training_rays(field, origins, directions, config.samples_per_ray, background, generator,
                                    grid).color
    chunks = [_render_eval_chunk(field, origins[i:i + config.eval_chunk], directions[i:i + config.eval_chunk],
                                 config.samples_per_ray, background, grid)
              for i in range(0, origins.shape[0], config.eval_chunk)]
    return torch.cat(chunks, dim=0) if chunks else origins.new_zeros((0, 3))
