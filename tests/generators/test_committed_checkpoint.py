"""The committed checkpoint (checkpoints/small-32, reports/benchmarks/trained_model.md) reads its conditioning view
on scenes it never saw: the demo's val and test objects, rendered here from their seeds."""

from pathlib import Path

import pytest
import torch

from generators.checkpoint import load_checkpoint
from scenes.dataset import ProceduralDatasetConfig, generate_dataset
from scenes.srn import list_srn_instances, read_srn_instance
from benchmarks.conditioning_probe import probe_batch, x0_errors

CHECKPOINT = Path(__file__).resolve().parents[2] / "checkpoints" / "small-32"


@pytest.fixture(scope="module")
def held_out_scenes(tmp_path_factory):
    """The demo's held-out scenes (luigi.cfg's PrepareDataset, seed 0): instances are seeded by split and index,
    so no training instance is needed to render them."""
    root = tmp_path_factory.mktemp("held-out") / "srn"
    generate_dataset(ProceduralDatasetConfig(train_instances=0, val_instances=1, test_instances=1, train_views=24,
                                             test_views=16, image_size=32, seed=0), root)
    return [read_srn_instance(folder) for split in ("val", "test") for folder in list_srn_instances(root, split)]


def test_the_committed_checkpoint_is_the_small_preset_at_the_demos_size():
    model, config = load_checkpoint(CHECKPOINT)
    assert config.image_size == 32 and config.prediction == "v"
    assert sum(p.numel() for p in model.parameters()) < 2_000_000


def test_the_committed_checkpoint_reconstructs_better_from_the_right_view_than_from_another_scenes(
        held_out_scenes):
    torch.manual_seed(0)
    model, _ = load_checkpoint(CHECKPOINT)
    probe = probe_batch(held_out_scenes, 32, per_scene=8, device=torch.device("cpu"))
    rows = {level: (right, wrong) for level, right, wrong in x0_errors(model, probe, levels=(-4.0, -2.0))}
    # A model that ignores its view has ratio right/wrong 1.0 (the demo's CPU-trained tiny X-UNet: 1.00); this
    # checkpoint's on these 6 scenes: 0.39 at logSNR -4 and 0.32 at -2 (0.53 and 0.45 over the 15 held-out scenes
    # of its training set). 0.8 fails for a model that reads nothing whatever the probe's noise draw.
    for level, (right, wrong) in rows.items():
        assert right < 0.8 * wrong, (level, right, wrong)
