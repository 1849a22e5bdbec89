"""The valid-weight counts of DeepLab v3 §3.3 and Fig. 4, exact."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from atrous.analysis import place, placements, trace_model, valid_taps, valid_weight_curve
from atrous.benchmark.model_table import build_model

# A 5×5 map, 3×3 filter, 'same' zero padding. Per axis, position p reads p − r, p, p + r:
#   rate 1: [2 3 3 3 2]   rate 2: [2 2 3 2 2]   rate 3: [2 2 1 2 2]
#   rate 4: [2 1 1 1 2]   rate 5: [1 1 1 1 1]
# and a position's count is its row's count times its column's.
BY_HAND = {
    1: ([2, 3, 3, 3, 2], {4: 4 / 25, 6: 12 / 25, 9: 9 / 25}),
    2: ([2, 2, 3, 2, 2], {4: 16 / 25, 6: 8 / 25, 9: 1 / 25}),
    3: ([2, 2, 1, 2, 2], {1: 1 / 25, 2: 8 / 25, 4: 16 / 25}),
    4: ([2, 1, 1, 1, 2], {1: 9 / 25, 2: 12 / 25, 4: 4 / 25}),
    5: ([1, 1, 1, 1, 1], {1: 1.0}),
}


@pytest.mark.parametrize("rate", sorted(BY_HAND))
def test_tiny_cases_by_hand(rate):
    per_axis, shares = BY_HAND[rate]
    assert valid_taps(5, 3, rate).tolist() == per_axis
    assert place("conv", (3, 3), (rate, rate), (5, 5)).shares == pytest.approx(shares)
    curve = valid_weight_curve(5)
    for count, share in shares.items():
        assert curve.share(count)[rate - 1] == pytest.approx(share)


def test_the_curve_counts_what_a_convolution_of_ones_counts():
    """Independently: convolve a map of ones with a 3×3 filter of ones (zero padding), and
    count the positions whose sum is 1, 4 or 9."""
    size = 17
    curve = valid_weight_curve(size)
    ones = torch.ones(1, 1, size, size)
    for rate in range(1, size + 3):
        sums = F.conv2d(ones, torch.ones(1, 1, 3, 3), padding=rate, dilation=rate)
        expected = valid_weight_curve(size, rates=[rate])
        for count in (1, 2, 4, 6, 9):
            share = float((sums == count).float().mean())
            assert expected.share(count)[0] == pytest.approx(share), (rate, count)
            if rate <= size:
                assert curve.share(count)[rate - 1] == pytest.approx(share)


def test_the_papers_statement_at_65():
    """§3.3: as the rate approaches 65 the 9-valid share goes to 0 and the 1-valid share
    to 1; from rate 65 on, every position sees only the centre."""
    curve = valid_weight_curve(65, rates=range(1, 131))
    nine, one = curve.share(9), curve.share(1)
    assert np.all(np.diff(nine) <= 0) and nine[0] > 0.9
    assert np.all(nine[32:] == 0)  # rate ≥ 33: 2·rate + 1 > 65, no position sees all nine
    assert np.all(np.diff(one[32:]) >= 0) and one[63] < 1
    assert np.all(one[64:] == 1.0)  # rate ≥ 65: only the centre, everywhere
    np.testing.assert_allclose(curve.shares.sum(axis=1), 1.0)


def test_deeplabv3_dilated_convolutions_are_placed_at_their_feature_size():
    """At 513×513 and output stride 16 the ASPP runs on 33×33; rate 18 (> 16 = 33 // 2)
    leaves no position all nine taps, and 3 rows × 3 columns only the centre."""
    trace = trace_model(build_model("deeplabv3_resnet50"), (513, 513))
    placed = {p.module: p for p in placements(trace)}
    aspp18 = placed["classifier.0.convs.3.0"]
    assert aspp18.rate == (18, 18) and aspp18.feature == (33, 33)
    assert aspp18.full_share == 0.0 and aspp18.single_share == pytest.approx((3 / 33) ** 2)
    assert {p.rate for p in placed.values()} == {(2, 2), (6, 6), (12, 12), (18, 18)}
