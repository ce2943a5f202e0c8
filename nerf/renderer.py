"""Volume rendering of a position-only field along rays (NeRF, Mildenhall et al. 2020, Eq. 3).

Rays are clipped to the field's scene box and sampled at S stratified positions: one per equal bin, jittered
uniformly inside it while training (Eq. 2) and at the bin midpoint at evaluation. Compositing follows nerfstudio's
renderers: alpha_i = 1 - exp(-sigma_i delta_i), transmittance T_i = exp(-sum_{j<i} sigma_j delta_j) (an exclusive
cumulative sum), weights w_i = T_i alpha_i, and the background fills the transmittance left behind the last sample.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from nerf.field import HashGridField
    from nerf.fit import NeRFConfig


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


def _render_chunk(field: HashGridField, origins: Tensor, directions: Tensor, samples: int, background: Tensor,
                  training: bool, generator: torch.Generator | None) -> Tensor:
    near, far = ray_box_intersection(origins, directions, field.aabb)
    distances, delta = stratified_distances(near, far, samples, training, generator)  # [R, S], [R, 1]
    positions = origins[:, None, :] + distances[..., None] * directions[:, None, :]  # [R, S, 3]
    sigma, rgb = field(positions.view(-1, 3))  # [R * S], [R * S, 3]
    num_rays = origins.shape[0]
    color, _ = composite(sigma.view(num_rays, samples), rgb.view(num_rays, samples, 3), delta, background)
    return color


def render_rays(field: HashGridField, origins: Tensor, directions: Tensor, config: NeRFConfig, training: bool,
                generator: torch.Generator | None = None) -> Tensor:
    """Colours [R, 3] of rays with origins [R, 3] and unit directions [R, 3] (world space, on the field's device).

    Uses `config.samples_per_ray`, `config.background` and, at evaluation, `config.eval_chunk` rays at a time.
    `generator` draws the stratified jitter while training (None: torch's global generator).
    The direction only places samples along the ray; the field never sees it.
    """
    background = torch.as_tensor(config.background, dtype=origins.dtype, device=origins.device)
    if training:
        return _render_chunk(field, origins, directions, config.samples_per_ray, background, True, generator)
    chunks = [_render_chunk(field, origins[i:i + config.eval_chunk], directions[i:i + config.eval_chunk],
                            config.samples_per_ray, background, False, None)
              for i in range(0, origins.shape[0], config.eval_chunk)]
    return torch.cat(chunks, dim=0) if chunks else origins.new_zeros((0, 3))
