"""The field has no view dependence: by signature, and through the renderer."""

import inspect

import pytest
import torch
from torch import nn

from nerf.field import FieldConfig, HashGridField, trunc_exp
from nerf.fit import NeRFConfig
from nerf.renderer import render_rays
from scenes.errors import InvalidInputError

SMALL = FieldConfig(num_levels=4, log2_hashmap_size=10, base_resolution=4, max_resolution=32, hidden_dim=16)


def random_field() -> HashGridField:
    torch.manual_seed(0)
    field = HashGridField(SMALL)
    with torch.no_grad():  # features far from the near-zero initialisation, so colours vary over space
        field.encoding.hash_table.normal_(0.0, 1.0)
    return field


def test_no_direction_parameter_anywhere():
    field = random_field()
    assert list(inspect.signature(field.forward).parameters) == ["positions"]
    assert list(inspect.signature(field.density).parameters) == ["positions"]
    assert list(inspect.signature(field.rgb).parameters) == ["geo_feat"]
    assert field.color_mlp[0].in_features == SMALL.geo_feat_dim


class RecordingField(nn.Module):
    """Passes through to a field and keeps every position and colour the renderer asked for."""

    def __init__(self, field):
        super().__init__()
        self.field, self.aabb, self.calls = field, field.aabb, []

    def forward(self, positions):
        sigma, rgb = self.field(positions)
        self.calls.append((positions.detach(), rgb.detach()))
        return sigma, rgb


def test_rays_through_one_point_see_one_colour_there():
    recorder = RecordingField(random_field())
    # Lines through the centre of the symmetric box [-1, 1]^3 cross it on a chord centred at the origin, so the
    # middle one of 3 evaluation samples of every ray lies at the origin whatever the direction.
    directions = torch.tensor([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [1.0, 1.0, 1.0], [-0.3, 0.8, -0.5]])
    directions = directions / directions.norm(dim=-1, keepdim=True)
    origins = -3.0 * directions
    render_rays(recorder, origins, directions, NeRFConfig(samples_per_ray=3), training=False)
    positions, colors = (tensor.view(4, 3, 3) for tensor in recorder.calls[0])
    assert positions[:, 1].abs().max() < 1e-5
    torch.testing.assert_close(colors[:, 1], colors[:1, 1].expand(4, 3), atol=1e-5, rtol=0)
    # The colour does vary over space, so the equality above is not a constant field's.
    assert (colors[:, 0] - colors[:, 1]).abs().max() > 1e-3


def test_density_and_colour_shapes_and_ranges():
    field = random_field()
    positions = torch.rand(50, 3) * 2 - 1
    sigma, geo_feat = field.density(positions)
    assert sigma.shape == (50,) and geo_feat.shape == (50, SMALL.geo_feat_dim)
    assert torch.all(sigma > 0)
    rgb = field.rgb(geo_feat)
    assert rgb.shape == (50, 3) and torch.all((rgb > 0) & (rgb < 1))
    torch.testing.assert_close(field(positions)[1], rgb)


def test_positions_are_normalised_by_the_configured_box():
    field = HashGridField(FieldConfig(num_levels=2, log2_hashmap_size=8, aabb=((-2, 0, 1), (2, 4, 3))))
    normalised = field.normalize(torch.tensor([[-2.0, 0.0, 1.0], [0.0, 2.0, 2.0], [2.0, 4.0, 3.0], [9, 9, 9]]))
    torch.testing.assert_close(normalised, torch.tensor([[0.0] * 3, [0.5] * 3, [1.0] * 3, [1.0] * 3]))
    with pytest.raises(InvalidInputError, match="aabb"):
        HashGridField(FieldConfig(aabb=((1, 1, 1), (-1, -1, -1))))


def test_trunc_exp_clamps_only_the_gradient():
    x = torch.tensor([-20.0, 0.0, 3.0, 20.0], requires_grad=True)
    y = trunc_exp(x)
    torch.testing.assert_close(y, torch.exp(x.detach()))
    y.sum().backward()
    torch.testing.assert_close(x.grad, torch.exp(torch.tensor([-15.0, 0.0, 3.0, 15.0])))
