"""The metric under the pair-based scores: pairs pooled over scenes, states that add up across processes."""

import numpy as np
import pytest

from reports.overlap import OverlapPSNR
from reports.pair_metric import PairMeanMetric
from reports.rotation_tsed import RotationTSED
from reports.tsed import ThresholdedSymmetricEpipolarDistance


class EveryPixelMean(PairMeanMetric):
    """One value per neighbouring pair: the mean of the pair's two images."""

    def pair_values(self, images, cameras):
        return [float((images[i].mean() + images[i + 1].mean()) / 2) for i in range(len(images) - 1)]


def test_pairs_are_pooled_over_scenes_and_merged_states_add_up():
    small, large = np.zeros((2, 2, 2, 3)), np.ones((4, 2, 2, 3))  # 1 pair of value 0, 3 pairs of value 1
    pooled = EveryPixelMean()
    pooled.update(small, None)
    pooled.update(large, None)
    assert pooled.compute().item() == pytest.approx(3 / 4)  # pooled pairs, not the mean of the scene means (1/2)
    first, second = EveryPixelMean(), EveryPixelMean()
    first.update(small, None)
    second.update(large, None)
    first.merge_state(second)  # what a reduction across processes does with summed states
    assert first.compute().item() == pytest.approx(3 / 4)
    pooled.reset()
    pooled.update(large, None)
    assert pooled.compute().item() == 1.0


@pytest.mark.parametrize("metric", [ThresholdedSymmetricEpipolarDistance, RotationTSED, OverlapPSNR])
def test_the_three_pair_scores_share_it(metric):
    assert issubclass(metric, PairMeanMetric) and metric.higher_is_better
