"""The effective receptive field (Luo et al., NeurIPS 2016) against a case with a closed
form: k stacked 3×3 convolutions with uniform weights, whose centre-pixel gradient is the
k-fold convolution of a 3×3 box."""

import numpy as np
import pytest
import torch
from torch import nn

from atrous.analysis import effective_receptive_fields, mass_radius

SIZE = 33


def _box_chain(k: int) -> nn.Sequential:
    layers = [nn.Conv2d(3 if i == 0 else 1, 1, 3, padding=1) for i in range(k)]
    with torch.no_grad():
        for conv in layers:
            conv.weight.fill_(1.0)
            conv.bias.zero_()
    return nn.Sequential(*layers)


def _expected(k: int) -> np.ndarray:
    """Σ over input channels (3) of the k-fold 2-D box convolution, centred on the image."""
    line = np.ones(1)
    for _ in range(k):
        line = np.convolve(line, np.ones(3))  # the binomial-like profile of length 2k + 1
    image = np.zeros((SIZE, SIZE))
    c = SIZE // 2
    image[c - k : c + k + 1, c - k : c + k + 1] = np.outer(line, line)
    return 3 * image


def _radius(profile: np.ndarray, share: float) -> int:
    """The smallest half-side d whose centred square holds ``share`` of the mass, by
    plain summation (independent of the implementation's ring counting)."""
    c = SIZE // 2
    total = profile.sum()
    for d in range(SIZE):
        if profile[c - d : c + d + 1, c - d : c + d + 1].sum() >= share * total - 1e-9:
            return d
    raise AssertionError("unreachable")


@pytest.mark.parametrize("k", [1, 3, 6])
def test_uniform_chain_is_the_k_fold_box(k):
    (erf,) = effective_receptive_fields(_box_chain(k), (SIZE, SIZE), samples=2)
    expected = _expected(k)
    np.testing.assert_allclose(erf.gradient, expected, rtol=1e-5)
    assert erf.pixel == (SIZE // 2, SIZE // 2) and erf.centre == (SIZE // 2, SIZE // 2)
    assert erf.half_size == (k, k)  # theoretical field: 2k + 1
    assert erf.radius50 == _radius(expected, 0.5)
    assert erf.radius90 == _radius(expected, 0.9)
    assert erf.radius90 <= k


def test_the_erf_is_much_smaller_than_the_field_for_a_deep_chain():
    """Luo et al. §2.2: the effective field grows like √k, the theoretical one like k."""
    (erf,) = effective_receptive_fields(_box_chain(12), (SIZE, SIZE), samples=1)
    assert erf.radius90 <= 7 < 12


def test_mass_radius_by_hand():
    g = np.zeros((5, 5))
    g[2, 2], g[2, 3], g[0, 0] = 5.0, 3.0, 2.0  # 50 % at the centre, 80 % within 1, all within 2
    assert [mass_radius(g, (2, 2), s) for s in (0.5, 0.8, 0.9)] == [0, 1, 2]
