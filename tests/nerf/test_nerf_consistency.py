"""The control the consistency score rests on: a position-only NeRF reproduces held-out views of a consistent
scene clearly better than those of views whose colours disagree, and noise worst of all.

Run as a script to benchmark the default configuration on the toy scene (wall time per fit, held-out PSNR):
    .venv/bin/python -m tests.nerf.test_nerf_consistency
"""

import time

import pytest

from nerf.field import FieldConfig
from nerf.fit import NeRFConfig
from nerf.protocol import SubsetConfig, run_protocol
from tests.nerf.test_nerf_toyscene import make_toy_scene, noise_views, permute_colors_per_view, psnr

#: A smaller configuration than the default: about 5 s per fit on one CPU core.
TEST_CONFIG = NeRFConfig(field=FieldConfig(log2_hashmap_size=14), steps=400, rays_per_batch=512, device="cpu")


@pytest.fixture(scope="module")
def heldout_psnr():
    scene = make_toy_scene(size=32, num_views=20, radius=2.6)
    controls = {"consistent": scene, "inconsistent": permute_colors_per_view(scene), "noise": noise_views(scene)}
    scores = {}
    for name, views in controls.items():
        result = run_protocol(views, SubsetConfig(heldout_every=4), TEST_CONFIG)
        scores[name] = psnr(result.renders.images, result.heldout.images)
    return scores


def test_consistent_views_score_clearly_higher_than_inconsistent_ones(heldout_psnr):
    assert heldout_psnr["consistent"] >= heldout_psnr["inconsistent"] + 3.0, heldout_psnr


def test_noise_scores_lowest(heldout_psnr):
    assert heldout_psnr["noise"] < heldout_psnr["inconsistent"] - 3.0, heldout_psnr
    assert heldout_psnr["noise"] < 12.0, heldout_psnr  # uniform noise against any prediction: about 10.8 dB


def benchmark(sizes=(32, 64), num_views: int = 20, every: int = 4, config: NeRFConfig | None = None) -> list[dict]:
    """Wall time per fit and held-out PSNR of `config` (default: NeRFConfig()) on the three controls."""
    config = config or NeRFConfig()
    rows = []
    for size in sizes:
        scene = make_toy_scene(size=size, num_views=num_views)
        for name, views in [("consistent", scene), ("inconsistent (colours permuted per view)",
                                                     permute_colors_per_view(scene)), ("noise", noise_views(scene))]:
            start = time.perf_counter()
            result = run_protocol(views, SubsetConfig(heldout_every=every), config)
            rows.append(dict(size=f"{size}x{size}", views=name, seconds=time.perf_counter() - start,
                             heldout_psnr=psnr(result.renders.images, result.heldout.images)))
            print(rows[-1], flush=True)
    return rows


if __name__ == "__main__":
    from tabulate import tabulate

    print(tabulate(benchmark(), headers="keys", floatfmt=".2f"))
