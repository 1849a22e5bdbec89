import numpy as np
import pytest
import torch
import torch.nn.functional as F

from atrous.layers import ALIGN_CORNERS, Upsample, bilinear_kernel, mirror_pad, resize


def test_resize_is_bilinear_without_align_corners():
    assert ALIGN_CORNERS is False
    x = torch.randn(1, 3, 5, 7)
    torch.testing.assert_close(
        resize(x, (11, 13)), F.interpolate(x, size=(11, 13), mode="bilinear", align_corners=False)
    )
    assert torch.equal(resize(x, (10, 14), mode="nearest"), F.interpolate(x, size=(10, 14), mode="nearest"))
    with pytest.raises(ValueError, match="mode"):
        resize(x, (4, 4), mode="bicubic")


def test_antialiased_resize_matches_torchvision_when_shrinking_and_changes_nothing_when_enlarging():
    from torchvision.transforms.v2 import functional as TF

    x = torch.randn(2, 3, 40, 52)
    shrunk = resize(x, (13, 17), antialias=True)
    torch.testing.assert_close(shrunk, TF.resize(x, [13, 17], antialias=True), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(shrunk, resize(x, (13, 17)), atol=1e-2)  # the low-pass filter acts
    torch.testing.assert_close(resize(x, (61, 70), antialias=True), resize(x, (61, 70)))
    with pytest.raises(ValueError, match="antialias applies to bilinear"):
        resize(x, (13, 17), mode="nearest", antialias=True)


def test_bilinear_kernel_is_fcns_upsample_filter():
    # FCN's upsample_filt(4): 1 - |i - 1.5| / 2 along each axis.
    row = torch.tensor([0.25, 0.75, 0.75, 0.25])
    torch.testing.assert_close(bilinear_kernel(4), row[:, None] * row[None, :])


@pytest.mark.parametrize("mode", ["nearest", "bilinear", "transposed"])
def test_upsample_reaches_exact_odd_sizes(mode):
    up = Upsample(3, 4, mode=mode)
    x = torch.randn(2, 3, 5, 6)
    full = up(x)
    assert full.shape == (2, 3, 20, 24)
    cropped = up(x, size=(19, 23))
    assert cropped.shape == (2, 3, 19, 23)
    # A crop of the ×factor map (cell j covers [4j, 4j + 4)), not a resize to the size.
    assert torch.equal(cropped, full[..., :19, :23])


def test_transposed_upsample_starts_as_interpolation_and_learns():
    up = Upsample(2, 2, mode="transposed")
    x = torch.ones(1, 2, 4, 4)
    y = up(x)
    # A constant map stays constant everywhere, borders included (edge padding).
    torch.testing.assert_close(y, torch.ones(1, 2, 8, 8))
    assert up.deconv.weight.requires_grad
    y.sum().backward()
    assert up.deconv.weight.grad is not None and up.deconv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("factor", [2, 8, 32])
def test_transposed_equals_bilinear_interpolation_everywhere(factor):
    up = Upsample(3, factor, mode="transposed")
    assert up.deconv.kernel_size == (2 * factor, 2 * factor) and up.deconv.stride == (factor, factor)
    x = torch.randn(2, 3, 5, 4)
    expected = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    with torch.no_grad():
        y = up(x)
    assert y.shape == expected.shape == (2, 3, 5 * factor, 4 * factor)
    assert (y - expected).abs().max().item() <= 1e-5  # corners and edges included
    # The channels stay separate (a grouped, per-channel kernel).
    x[:, 1] = 0
    with torch.no_grad():
        assert up(x)[:, 1].abs().max().item() == 0


def test_transposed_equals_bilinear_on_a_single_cell_and_a_crop():
    up = Upsample(1, 4, mode="transposed")
    x = torch.randn(1, 1, 1, 3)
    with torch.no_grad():
        torch.testing.assert_close(up(x), F.interpolate(x, scale_factor=4, mode="bilinear", align_corners=False))
        torch.testing.assert_close(
            up(x, (3, 10)), F.interpolate(x, scale_factor=4, mode="bilinear", align_corners=False)[..., :3, :10]
        )


@pytest.mark.parametrize("factor", [1, 2, 3, 8])
def test_nearest_equals_interpolate_nearest(factor):
    x = torch.randn(1, 2, 3, 5)
    up = Upsample(2, factor, mode="nearest")
    assert torch.equal(up(x), F.interpolate(x, scale_factor=factor, mode="nearest"))
    # Hand check: every cell is repeated factor × factor times.
    assert torch.equal(up(x), x.repeat_interleave(factor, -2).repeat_interleave(factor, -1))
    assert not list(up.parameters())


def test_bilinear_equals_interpolate_bilinear():
    x = torch.randn(1, 2, 3, 5)
    up = Upsample(2, 8, mode="bilinear")
    assert torch.equal(up(x, (20, 33)), F.interpolate(x, scale_factor=8, mode="bilinear")[..., :20, :33])


@pytest.mark.parametrize("mode", ["nearest", "bilinear", "transposed"])
def test_a_size_beyond_factor_times_the_input_is_rejected(mode):
    up = Upsample(3, 4, mode=mode)
    x = torch.randn(1, 3, 5, 6)
    assert up(x, (20, 24)).shape[-2:] == (20, 24)  # exactly factor × is fine
    with pytest.raises(ValueError, match=r"\(21, 24\)"):
        up(x, (21, 24))
    with pytest.raises(ValueError, match="ceil_mode"):
        up(x, (20, 25))


@pytest.mark.parametrize("factor", [1, 3, 5])
def test_transposed_needs_an_even_factor(factor):
    with pytest.raises(ValueError, match=f"even factor, got {factor}"):
        Upsample(3, factor, mode="transposed")


def test_frozen_transposed_upsampling_keeps_its_kernel():
    up = Upsample(2, 4, mode="transposed", learnable=False)
    assert not up.deconv.weight.requires_grad
    assert not [p for p in up.parameters() if p.requires_grad]
    torch.testing.assert_close(up.deconv.weight[0, 0], bilinear_kernel(8))
    torch.testing.assert_close(up.deconv.weight[1, 0], bilinear_kernel(8))


def test_bilinear_kernel_odd_size():
    # FCN's upsample_filt(3): factor 2, centre 1 → rows (0.5, 1, 0.5).
    row = torch.tensor([0.5, 1.0, 0.5])
    torch.testing.assert_close(bilinear_kernel(3), row[:, None] * row[None, :])


def test_upsample_rejects_bad_arguments():
    with pytest.raises(ValueError, match="factor"):
        Upsample(3, 0)
    with pytest.raises(ValueError, match="mode"):
        Upsample(3, 2, mode="bicubic")
    with pytest.raises(ValueError, match="factor"):
        Upsample(3, 2.0)
    with pytest.raises(ValueError, match="factor"):
        Upsample(3, True)


# --- mirror_pad (U-Net's overlap-tile border extrapolation) --------------------------


def _numpy_reflect(x, top, bottom, left, right):
    # torch's "reflect" (edge not repeated) is numpy's "reflect"; numpy keeps reflecting
    # for pads wider than the array.
    pads = ((0, 0), (0, 0), (top, bottom), (left, right))
    return torch.from_numpy(np.pad(x.numpy(), pads, mode="reflect"))


def test_mirror_pad_equals_reflect_padding_for_small_pads():
    x = torch.randn(2, 3, 6, 9)
    assert torch.equal(mirror_pad(x, 1, 5, 8, 0), F.pad(x, (8, 0, 1, 5), mode="reflect"))
    assert torch.equal(mirror_pad(x, 0, 0, 0, 0), x)


def test_mirror_pad_hand_example():
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])[None, None]
    y = mirror_pad(x, 0, 0, 5, 5)
    assert y[0, 0, 0].tolist() == [2, 1, 2, 3, 2, 1, 2, 3, 2, 1, 2, 3, 2]
    y = mirror_pad(x, 3, 0, 0, 0)
    assert y[0, 0, :, 0].tolist() == [4, 1, 4, 1, 4]


def test_mirror_pad_wider_than_the_image_reflects_repeatedly():
    x = torch.randn(1, 2, 5, 7)
    # Pads 3× the size and more; F.pad(mode="reflect") refuses these.
    with pytest.raises(RuntimeError):
        F.pad(x, (21, 21, 15, 15), mode="reflect")
    # Symmetric pads, and U-Net's overlap-tile pads (92 before, 92 + rounding after).
    for pads in [(15, 15, 21, 21), (92, 92, 92, 92), (92, 107, 92, 105), (3, 0, 0, 30)]:
        assert torch.equal(mirror_pad(x, *pads), _numpy_reflect(x, *pads)), pads


def test_mirror_pad_strongly_asymmetric_pads_reflect_periodically():
    x = torch.arange(5.0).reshape(1, 1, 5, 1).expand(1, 1, 5, 2).contiguous()
    y = mirror_pad(x, 15, 2, 0, 0)
    # Mirroring repeatedly is the period-8 extension 0 1 2 3 4 3 2 1 | 0 …: the row 15
    # above row 0 is row 1 (15 mod 8 = 7 → 8 − 7).
    assert y[0, 0, 0, 0].item() == 1.0
    assert torch.equal(y, _numpy_reflect(x, 15, 2, 0, 0))


def test_mirror_pad_replicates_a_single_pixel():
    x = torch.randn(1, 2, 1, 1)
    assert torch.equal(mirror_pad(x, 2, 3, 4, 1), x.expand(1, 2, 6, 6))


def test_mirror_pad_only_replicates_the_size_1_dimension():
    x = torch.arange(5.0).reshape(1, 1, 1, 5)
    assert torch.equal(mirror_pad(x, 1, 1, 2, 2), _numpy_reflect(x, 1, 1, 2, 2))


def test_mirror_pad_rejects_negative_pads():
    with pytest.raises(ValueError, match="padding must be >= 0"):
        mirror_pad(torch.randn(1, 1, 4, 4), 0, -1, 0, 0)
