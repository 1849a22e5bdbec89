"""Paired transforms: shapes, integer masks, image/mask alignment, padding with ignore."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from atrous.data.constants import IGNORE_INDEX
from atrous.data.transforms import RandomScale, denormalize, eval_transforms, train_transforms

# Affinely independent colours: a blend of two or more is far from every one of them.
CODES = torch.tensor([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0]], dtype=torch.float32)


def _coded_pair(height=37, width=53, block=6, seed=0):
    """A mask of blocks of labels 0..3 and an image whose colour at each pixel encodes its label."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, 4, (height // block + 1, width // block + 1), generator=g)
    mask = coarse.repeat_interleave(block, 0).repeat_interleave(block, 1)[:height, :width].contiguous()
    image = CODES[mask].permute(2, 0, 1).to(torch.uint8).contiguous()
    return image, mask


@pytest.mark.parametrize("crop", [32, (24, 40), (64, 96)])
def test_output_shapes_and_dtypes(crop):
    image, mask = _coded_pair()
    out_image, out_mask = train_transforms(crop)(image, mask)
    size = (crop, crop) if isinstance(crop, int) else crop
    assert out_image.shape == (3, *size) and out_image.dtype == torch.float32
    assert out_mask.shape == size and out_mask.dtype == torch.int64
    assert type(out_image) is torch.Tensor and type(out_mask) is torch.Tensor


def test_masks_keep_only_their_labels_and_ignore():
    image, mask = _coded_pair()
    mask = torch.tensor([0, 3, 7, 9])[mask]  # labels {0, 3, 7, 9}
    transform = train_transforms((48, 64), scale_range=(0.3, 2.5))
    for seed in range(10):
        torch.manual_seed(seed)
        out = transform(image, mask)[1]
        assert set(out.unique().tolist()) <= {0, 3, 7, 9, IGNORE_INDEX}


def test_geometry_keeps_image_and_mask_aligned():
    image, mask = _coded_pair(block=10)
    transform = train_transforms((48, 64), scale_range=(0.4, 2.2), jitter=False, mean=(0, 0, 0), std=(1, 1, 1))
    saw_padding, checked, total = False, 0, 0
    for seed in range(12):
        torch.manual_seed(seed)
        out_image, out_mask = transform(image, mask)
        pixels = (out_image * 255).permute(1, 2, 0).reshape(-1, 3)  # (N, 3)
        labels = out_mask.reshape(-1)
        padded = labels == IGNORE_INDEX
        saw_padding |= bool(padded.any())
        assert pixels[padded].abs().max() < 1e-3 if padded.any() else True  # pad: image 0 where mask is ignore
        distance = torch.cdist(pixels[~padded], CODES)  # (N, 4)
        nearest = distance.min(1)
        pure = nearest.values < 2.0  # pixels whose colour is exactly one label's code
        assert torch.equal(nearest.indices[pure], labels[~padded][pure])
        checked, total = checked + int(pure.sum()), total + pure.numel()
    assert checked > 0.5 * total  # most pixels lie inside blocks, so the check has teeth
    assert saw_padding  # scales below 1 made images smaller than the crop


def test_jitter_changes_image_only():
    image, mask = _coded_pair(40, 40)
    torch.manual_seed(0)
    out_image, out_mask = train_transforms(40, scale_range=None, hflip=0.0, jitter=0.5)(image, mask)
    assert torch.equal(out_mask, mask)
    plain = eval_transforms()(image, mask)[0]
    assert not torch.allclose(out_image, plain)


def test_eval_transforms():
    image, mask = _coded_pair()
    out_image, out_mask = eval_transforms()(image, mask)
    assert out_image.shape == (3, 37, 53) and torch.equal(out_mask, mask)
    assert torch.equal(denormalize(out_image), image)
    resized_image, resized_mask = eval_transforms(resize=(20, 30))(image, mask)
    assert resized_image.shape == (3, 20, 30) and resized_mask.shape == (20, 30)
    assert set(resized_mask.unique().tolist()) <= set(mask.unique().tolist())
    assert eval_transforms(resize=20)(image, mask)[1].shape == (20, 29)  # shorter side 20, aspect kept


def test_nearest_exact_mask_resize_keeps_pixel_centres():
    mask = torch.arange(4).repeat_interleave(2).view(1, 8).expand(3, 8).contiguous()  # [0 0 1 1 2 2 3 3]
    image = torch.zeros(3, 3, 8, dtype=torch.uint8)
    torch.manual_seed(0)
    out = eval_transforms(resize=(3, 4))(image, mask)[1]
    assert out[0].tolist() == [0, 1, 2, 3]


def test_denormalize_batches():
    batch = torch.rand(2, 3, 4, 5)
    as_uint8 = denormalize(batch, mean=(0, 0, 0), std=(1, 1, 1))
    assert as_uint8.dtype == torch.uint8 and as_uint8.shape == (2, 3, 4, 5)
    assert torch.equal(as_uint8, (batch * 255).round().to(torch.uint8))


def test_bad_arguments():
    with pytest.raises(ValueError, match="crop_size must be"):
        train_transforms((0, 10))
    with pytest.raises(ValueError, match="scale_range"):
        RandomScale((2.0, 1.0))
    with pytest.raises(ValueError, match="base_size must be a positive integer"):
        RandomScale((1.0, 1.0), base_size=0)
    with pytest.raises(ValueError, match=r"expected image \(3, H, W\) and mask \(H, W\)"):
        eval_transforms()(torch.zeros(3, 4, 4, dtype=torch.uint8), torch.zeros(1, 4, 4, dtype=torch.int64))


def test_random_scale_range():
    image, mask = _coded_pair(100, 100)
    transform = RandomScale((0.5, 0.5))
    from torchvision import tv_tensors

    out_image, out_mask = transform(tv_tensors.Image(image), tv_tensors.Mask(mask))
    assert out_image.shape == (3, 50, 50) and out_mask.shape == (50, 50)
    assert np.isin(out_mask.numpy(), mask.numpy()).all()


@pytest.mark.parametrize(("height", "width"), [(100, 100), (30, 80), (120, 45)])
def test_random_scale_is_relative_to_the_base_size(height, width):
    """With base_size the factor applies to the image brought to that shorter side: images of
    any size come out at one scale (shorter side base_size × factor), aspect kept."""
    from torchvision import tv_tensors

    image, mask = _coded_pair(height, width)
    for low, high in ((1.0, 1.0), (0.5, 0.5)):
        out_image, out_mask = RandomScale((low, high), base_size=60)(tv_tensors.Image(image), tv_tensors.Mask(mask))
        assert min(out_image.shape[-2:]) == round(60 * low) and out_mask.shape == out_image.shape[-2:]
        assert abs(out_image.shape[-1] / out_image.shape[-2] - width / height) < 0.05
    torch.manual_seed(0)
    sides = [min(RandomScale((0.5, 1.5), base_size=60)(tv_tensors.Image(image))[0].shape[-2:]) for _ in range(30)]
    assert min(sides) >= 30 and max(sides) <= 90 and len(set(sides)) > 5
    # train_transforms draws its scale the same way
    out, _ = train_transforms((20, 20), scale_range=None, base_size=60, jitter=False, hflip=0)(image, mask)
    assert out.shape == (3, 20, 20)


def test_a_uint8_image_brought_to_one_pixel_is_its_mean():
    # PyTorch's uint8 antialiased kernel fails an internal assert for a 1×1 output (data.base_size=1
    # or a tiny scale): that size goes through the float kernel.
    image = torch.arange(2 * 3 * 4 * 5, dtype=torch.uint8).reshape(2, 3, 4, 5)[0]
    mask = torch.zeros(4, 5, dtype=torch.int64)
    out_image, out_mask = train_transforms(
        (1, 1), scale_range=(1.0, 1.0), base_size=1, hflip=0, jitter=False, mean=(0, 0, 0), std=(1, 1, 1)
    )(image, mask)
    # Shrunk 4×5 → 1×1 with antialiasing: the channel's mean (up to the triangle filter's weights).
    assert out_image.shape == (3, 1, 1) and out_mask.shape == (1, 1)
    assert torch.allclose(out_image.flatten() * 255, image.float().mean((1, 2)), atol=1.0)
