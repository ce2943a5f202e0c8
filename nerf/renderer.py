"""Volume rendering of a position-only field along rays (NeRF, Mildenhall et al. 2020, Eq. 3).

Rays are clipped to the field's scene box and sampled at S stratified positions: one per equal bin, jittered
uniformly inside it while training (Eq. 2) and at the bin midpoint at evaluation. Compositing follows nerfstudio's
renderers: alpha_i = 1 - exp(-sigma_i delta_i), transmittance T_i = exp(-sum_{j<i} sigma_j delta_j) (an exclusive
cumulative sum), weights w_i = T_i alpha_i, and the background fills the transmittance left behind the last sample.
Empty space is skipped with an occupancy grid (`nerf/occupancy.py`) and, at evaluation, rays terminate early.
"""

from __future__ import annotations

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
    the sample gets density 0 (empty space, by the occupancy grid or outside the box)."""
    if keep is None:
        return field(positions)
    index = keep.nonzero().squeeze(1)  # [K]
    sigma, rgb = field(positions[index])
    zeros = positions.new_zeros(positions.shape[0])
    return zeros.index_copy(0, index, sigma.to(zeros.dtype)), \
        positions.new_zeros(positions.shape).index_copy(0, index, rgb.to(zeros.dtype))


def _sample_mask(positions: Tensor, delta: Tensor, grid: OccupancyGrid | None) -> Tensor | None:
    """Which samples [R, S] need the field: those in occupied cells on rays that cross the box (None: all)."""
    if grid is None or not grid.config.enabled:
        return None
    num_rays, samples = positions.shape[:2]
    return grid.query(positions.view(-1, 3)).view(num_rays, samples) & (delta > 0)


def _render_chunk(field: HashGridField, origins: Tensor, directions: Tensor, samples: int, background: Tensor,
                  training: bool, generator: torch.Generator | None, grid: OccupancyGrid | None) -> Tensor:
    near, far = ray_box_intersection(origins, directions, field.aabb)
    distances, delta = stratified_distances(near, far, samples, training, generator)  # [R, S], [R, 1]
    positions = origins[:, None, :] + distances[..., None] * directions[:, None, :]  # [R, S, 3]
    num_rays = origins.shape[0]
    keep = _sample_mask(positions, delta, grid)
    if training:
        sigma, rgb = _evaluate(field, positions.view(-1, 3), None if keep is None else keep.view(-1))
        color, _ = composite(sigma.view(num_rays, samples), rgb.view(num_rays, samples, 3), delta, background)
        return color
    return _march_with_early_termination(field, positions, delta, keep, background)


#: Samples evaluated per round of ray marching at evaluation; rays whose transmittance has fallen below
#: `TERMINATION_TRANSMITTANCE` after a round are not marched further (instant-NGP's early termination, with the
#: same 1e-4: the colour it drops is below 1e-4 per channel, invisible in an 8-bit image).
MARCH_SEGMENT = 8
TERMINATION_TRANSMITTANCE = 1e-4


def _march_with_early_termination(field: HashGridField, positions: Tensor, delta: Tensor, keep: Tensor | None,
                                  background: Tensor) -> Tensor:
    """Front-to-back compositing of positions [R, S, 3] in segments of `MARCH_SEGMENT` samples, each over the rays
    still transmitting light; equal to `composite` over all samples up to the light dropped at termination."""
    num_rays, samples = positions.shape[:2]
    color = positions.new_zeros((num_rays, 3))
    depth = positions.new_zeros(num_rays)  # optical depth crossed so far, per ray
    alive = torch.arange(num_rays, device=positions.device)  # [A] rays still marching
    for start in range(0, samples, MARCH_SEGMENT):
        segment = slice(start, min(start + MARCH_SEGMENT, samples))
        points = positions[alive, segment]  # [A, s, 3]
        length = points.shape[1]
        mask = None if keep is None else keep[alive, segment].reshape(-1)
        sigma, rgb = _evaluate(field, points.reshape(-1, 3), mask)
        ray_delta = delta[alive]  # [A, 1]
        # A segment composited on black, then dimmed by the light that reached it (transmittance is a product).
        seg_color, _ = composite(sigma.view(-1, length), rgb.view(-1, length, 3), ray_delta, background * 0)
        transmittance = torch.exp(-depth[alive])  # [A]
        color[alive] += transmittance[:, None] * seg_color
        depth[alive] += (sigma.view(-1, length) * ray_delta).sum(dim=-1)
        alive = alive[torch.exp(-depth[alive]) > TERMINATION_TRANSMITTANCE]
        if alive.numel() == 0:
            break
    return color + torch.exp(-depth)[:, None] * background


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
        return _render_chunk(field, origins, directions, config.samples_per_ray, background, True, generator, grid)
    chunks = [_render_chunk(field, origins[i:i + config.eval_chunk], directions[i:i + config.eval_chunk],
                            config.samples_per_ray, background, False, None, grid)
              for i in range(0, origins.shape[0], config.eval_chunk)]
    return torch.cat(chunks, dim=0) if chunks else origins.new_zeros((0, 3))
