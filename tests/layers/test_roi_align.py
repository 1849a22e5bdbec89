import pytest
import torch
import torchvision.ops as tvops

from atrous.layers import RoIAlign, RoIPool, roi_align, roi_pool

FEATURE = (2, 3, 13, 17)  # a batch of two feature maps, (N, C, H, W)


def random_boxes(seed: int, scale: float, count: int = 40) -> torch.Tensor:
    """(count, 5) boxes over the image that a FEATURE map at ``scale`` covers: centres up to
    20% of the image outside it (boxes partly or wholly off the map), sizes from tiny
    (under a feature pixel) to larger than the map, and a few inverted (x2 < x1 or y2 < y1)."""
    g = torch.Generator().manual_seed(seed)
    image = torch.tensor([FEATURE[3], FEATURE[2]]) / scale
    centre = (torch.rand(count, 2, generator=g) * 1.4 - 0.2) * image
    size = torch.rand(count, 2, generator=g) ** 3 * image * 1.2
    size[:4] = torch.rand(4, 2, generator=g) * 0.5 / scale  # tiny: under half a feature pixel
    size[4:7] *= -0.05  # inverted
    batch = torch.randint(0, FEATURE[0], (count, 1), generator=g).float()
    return torch.cat([batch, centre - size / 2, centre + size / 2], dim=1)


def feature(seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(FEATURE, generator=torch.Generator().manual_seed(100 + seed), dtype=dtype)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("scale", [1 / 4, 1 / 16])
def test_roi_align_equals_torchvision(seed, scale):
    x, boxes = feature(seed), random_boxes(seed, scale)
    for output_size in (7, (5, 3)):
        ours = roi_align(x, boxes, output_size, scale, sampling_ratio=2, aligned=True)
        theirs = tvops.roi_align(x, boxes, output_size, scale, sampling_ratio=2, aligned=True)
        assert ours.shape == theirs.shape
        assert (ours - theirs).abs().max().item() <= 1e-5
    # float64: equal up to the order of the additions
    x64, boxes64 = x.double(), boxes.double()
    torch.testing.assert_close(
        roi_align(x64, boxes64, 7, scale, sampling_ratio=2),
        tvops.roi_align(x64, boxes64, 7, scale, sampling_ratio=2, aligned=True),
        rtol=0,
        atol=1e-12,
    )


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [-1, 0, 1, 3])
def test_roi_align_equals_torchvision_for_every_sampling_and_alignment(aligned, sampling_ratio):
    # sampling_ratio <= 0 is adaptive: ceil(box size / bins) points per axis, per box.
    for seed, scale in ((3, 1 / 4), (4, 1 / 16)):
        x, boxes = feature(seed, torch.float64), random_boxes(seed, scale).double()
        torch.testing.assert_close(
            roi_align(x, boxes, (5, 3), scale, sampling_ratio, aligned),
            tvops.roi_align(x, boxes, (5, 3), scale, sampling_ratio, aligned),
            rtol=0,
            atol=1e-12,
        )


def test_roi_align_takes_a_list_of_boxes_per_image():
    x, boxes = feature(5), random_boxes(5, 1 / 4)
    per_image = [boxes[boxes[:, 0] == i, 1:] for i in range(FEATURE[0])]
    ours = roi_align(x, per_image, 7, 1 / 4, sampling_ratio=2)
    assert ours.shape == (len(boxes), 3, 7, 7)
    assert (ours - tvops.roi_align(x, per_image, 7, 1 / 4, 2, aligned=True)).abs().max().item() <= 1e-5
    # The list is the Tensor[K, 5] form with the image index prepended.
    stacked = torch.cat([torch.cat([torch.full((len(b), 1), float(i)), b], 1) for i, b in enumerate(per_image)])
    torch.testing.assert_close(ours, roi_align(x, stacked, 7, 1 / 4, sampling_ratio=2))
    assert roi_align(x, [torch.zeros(0, 4)] * 2, 7).shape == (0, 3, 7, 7)
    assert roi_align(x, torch.zeros(0, 5), 7, sampling_ratio=2).shape == (0, 3, 7, 7)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("sampling_ratio", "aligned"), [(2, True), (-1, True), (-1, False)])
def test_roi_align_gradient_equals_torchvisions(dtype, sampling_ratio, aligned):
    x, boxes = feature(6, dtype), random_boxes(6, 1 / 4).to(dtype)
    grad_out = torch.randn(len(boxes), 3, 7, 7, generator=torch.Generator().manual_seed(7), dtype=dtype)
    grads = []
    for op in (roi_align, tvops.roi_align):
        leaf = x.clone().requires_grad_()
        op(leaf, boxes, 7, 1 / 4, sampling_ratio, aligned).backward(grad_out)
        grads.append(leaf.grad)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=tol)
    assert grads[0].abs().sum() > 0
    # Like torchvision, no gradient flows to the boxes.
    boxes = boxes.clone().requires_grad_()
    roi_align(x.requires_grad_(), boxes, 7, 1 / 4, sampling_ratio, aligned).sum().backward()
    assert boxes.grad is None


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("scale", [1 / 4, 1 / 16])
def test_roi_pool_equals_torchvision(seed, scale):
    x, boxes = feature(seed), random_boxes(seed, scale)
    for output_size in (7, (5, 3)):
        leaf, tv_leaf = x.clone().requires_grad_(), x.clone().requires_grad_()
        ours = roi_pool(leaf, boxes, output_size, scale)
        theirs = tvops.roi_pool(tv_leaf, boxes, output_size, scale)
        assert torch.equal(ours, theirs)  # a max selects a value: exact
        grad_out = torch.randn_like(ours)
        ours.backward(grad_out)
        theirs.backward(grad_out)
        torch.testing.assert_close(leaf.grad, tv_leaf.grad)
    per_image = [boxes[boxes[:, 0] == i, 1:] for i in range(FEATURE[0])]
    assert torch.equal(roi_pool(x, per_image, 7, scale), tvops.roi_pool(x, per_image, 7, scale))


def test_roi_pool_rounds_halves_away_from_zero_like_c():
    # 2.5 / 1 rounds to 3 in C (torch.round would give 2), 0.5 to 1, -0.5 to -1.
    x = torch.arange(36.0).view(1, 1, 6, 6)
    boxes = torch.tensor([[0, 2.5, 0.5, 4.5, 3.5], [0, -0.5, -0.5, 1.5, 2.5]])
    assert torch.equal(roi_pool(x, boxes, 2), tvops.roi_pool(x, boxes, 2))


def test_roi_pool_quantisation_error_against_roi_align_on_a_ramp():
    """Mask R-CNN §3's misalignment argument, measured on a map whose values are their own
    x position: f(x, y) = x on a stride-16 feature map (spatial_scale 1/16), with 200 boxes
    at fractional image coordinates, pooled to 7×7.

    In the frame where feature pixel j sits at x = j, box bin q spans
    [x1/16 − δ + q·w, x1/16 − δ + (q + 1)·w] with w = (x2 − x1)/16/7 and δ = ½ for
    ``aligned=True``, 0 otherwise (RoIPool's frame). Judged by each operation's own
    aggregation over the exact bin:

    * RoIAlign averages bilinear samples of a linear function, so it returns the bin's
      exact mean, its centre: measured error 1.4e-14 feature pixels (float64 round-off).
    * RoIPool takes the max over the pixels of a quantised bin; the exact bin's max pixel
      is floor(right end) (every bin is over one pixel wide here, so it holds one). Rounding
      the box to whole pixels and the bins to floor/ceil pixel ranges picks another pixel
      in 45% of the bins, by a mean of 0.45 and up to 2 feature pixels — 32 image pixels.
      (Against the continuous max, the right end itself: a mean 0.34, max 1.28 pixels.)
    """
    stride, size, count = 16, 40, 200
    ramp = torch.arange(size, dtype=torch.float64).expand(1, 1, size, size)
    g = torch.Generator().manual_seed(0)
    x1, y1 = (16 + 180 * torch.rand(2, count, generator=g, dtype=torch.float64)).unbind()
    w, h = (7 * stride + 290 * torch.rand(2, count, generator=g, dtype=torch.float64)).unbind()  # bins > 1 px
    boxes = torch.stack([torch.zeros(count, dtype=torch.float64), x1, y1, x1 + w, y1 + h], dim=1)
    assert boxes[:, 3:].max() < (size - 1) * stride  # inside the map: no border rules involved
    q = torch.arange(7, dtype=torch.float64)
    bin_width = (w / stride / 7)[:, None]

    for aligned in (True, False):
        start = (x1 / stride - (0.5 if aligned else 0.0))[:, None]
        exact_mean = start + (q + 0.5) * bin_width  # (count, 7): one value per column of bins
        pooled = roi_align(ramp, boxes, 7, 1 / stride, sampling_ratio=2, aligned=aligned)[:, 0]
        assert (pooled - exact_mean[:, None, :]).abs().max().item() < 1e-9

    exact_max = (x1 / stride)[:, None] + (q + 1) * bin_width
    pooled = roi_pool(ramp, boxes, 7, 1 / stride)[:, 0]
    error = (pooled - exact_max.floor()[:, None, :]).abs()
    assert error.mean().item() > 0.35  # measured 0.453
    assert (error > 0).double().mean().item() > 0.35  # measured 0.45 of the bins
    assert error.max().item() >= 2  # measured 2.0 feature pixels
    continuous = (pooled - exact_max[:, None, :]).abs()
    assert continuous.mean().item() > 0.25 and continuous.max().item() > 1  # measured 0.344, 1.283


def test_modules_wrap_the_functions():
    x, boxes = feature(8), random_boxes(8, 1 / 16)
    align = RoIAlign((7, 5), spatial_scale=1 / 16, sampling_ratio=2)
    torch.testing.assert_close(align(x, boxes), roi_align(x, boxes, (7, 5), 1 / 16, 2, True))
    assert repr(align) == "RoIAlign(output_size=(7, 5), spatial_scale=0.0625, sampling_ratio=2, aligned=True)"
    pool = RoIPool(7, spatial_scale=1 / 16)
    assert torch.equal(pool(x, boxes), roi_pool(x, boxes, 7, 1 / 16))
    assert repr(pool) == "RoIPool(output_size=(7, 7), spatial_scale=0.0625)"


def test_half_precision_samples_in_float32():
    x, boxes = feature(9), random_boxes(9, 1 / 16)
    out = roi_align(x.bfloat16(), boxes, 7, 1 / 16, sampling_ratio=2)
    assert out.dtype == torch.bfloat16
    reference = tvops.roi_align(x.bfloat16().float(), boxes, 7, 1 / 16, 2, aligned=True)
    torch.testing.assert_close(out.float(), reference, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("op", [roi_align, roi_pool])
def test_bad_arguments_are_named(op):
    name = op.__name__
    x = torch.randn(2, 3, 8, 8)
    with pytest.raises(ValueError, match=rf"{name}: boxes must be a Tensor\[K, 5\].*shape \(4, 4\)"):
        op(x, torch.zeros(4, 4), 7)
    with pytest.raises(ValueError, match=rf"{name}: boxes must be a Tensor\[K, 5\].*shape \(5,\)"):
        op(x, torch.zeros(5), 7)
    with pytest.raises(ValueError, match=rf"{name}: boxes\[1\] must be a Tensor\[L, 4\].*\(3, 5\)"):
        op(x, [torch.zeros(2, 4), torch.zeros(3, 5)], 7)
    with pytest.raises(ValueError, match=rf"{name}: input must be \(N, C, H, W\), got shape \(3, 8, 8\)"):
        op(x[0], torch.zeros(1, 5), 7)
    with pytest.raises(ValueError, match=rf"{name}: box batch indices must lie in \[0, 2\)"):
        op(x, torch.tensor([[2.0, 0, 0, 4, 4]]), 7)
    with pytest.raises(ValueError, match=rf"{name}: output_size"):
        op(x, torch.zeros(1, 5), (7, 0))
    with pytest.raises(TypeError, match=rf"{name}: boxes must be"):
        op(x, "boxes", 7)
