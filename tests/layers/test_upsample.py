import pytest
import torch
import torch.nn.functional as F

from atrous.layers import ALIGN_CORNERS, Upsample, bilinear_kernel, resize


def test_resize_is_bilinear_without_align_corners():
    assert ALIGN_CORNERS is False
    x = torch.randn(1, 3, 5, 7)
    torch.testing.assert_close(
        resize(x, (11, 13)), F.interpolate(x, size=(11, 13), mode="bilinear", align_corners=False)
    )
    assert torch.equal(resize(x, (10, 14), mode="nearest"), F.interpolate(x, size=(10, 14), mode="nearest"))
    with pytest.raises(ValueError, match="mode"):
        resize(x, (4, 4), mode="bicubic")


def test_bilinear_kernel_is_fcns_upsample_filter():
    # FCN's upsample_filt(4): 1 - |i - 1.5| / 2 along each axis.
    row = torch.tensor([0.25, 0.75, 0.75, 0.25])
    torch.testing.assert_close(bilinear_kernel(4), row[:, None] * row[None, :])


@pytest.mark.parametrize("mode", ["nearest", "bilinear", "transposed"])
def test_upsample_reaches_exact_odd_sizes(mode):
    up = Upsample(3, 4, mode=mode)
    x = torch.randn(2, 3, 5, 6)
    assert up(x).shape == (2, 3, 20, 24)
    assert up(x, size=(19, 23)).shape == (2, 3, 19, 23)


def test_transposed_upsample_starts_as_interpolation_and_learns():
    up = Upsample(2, 2, mode="transposed")
    x = torch.ones(1, 2, 4, 4)
    y = up(x)
    # A constant map stays constant away from the border when the kernel is bilinear.
    torch.testing.assert_close(y[..., 1:-1, 1:-1], torch.ones_like(y[..., 1:-1, 1:-1]))
    assert up.deconv.weight.requires_grad


def test_upsample_rejects_bad_arguments():
    with pytest.raises(ValueError, match="factor"):
        Upsample(3, 0)
    with pytest.raises(ValueError, match="mode"):
        Upsample(3, 2, mode="bicubic")
