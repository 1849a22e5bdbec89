"""U-Net's elastic deformation (§3.1): labels kept, image and mask warped alike, reproducible, identity at σ = 0."""

from __future__ import annotations

import pytest
import torch
from torchvision import tv_tensors

from atrous.data.constants import IGNORE_INDEX
from atrous.data.transforms import ElasticDeformation, PairedTransform, train_transforms


def _smooth_image(channels=3, size=(64, 80), seed=0) -> torch.Tensor:
    """A uint8 image of smooth blobs: bicubic upsampling of coarse noise."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, channels, 6, 7, generator=g)
    image = torch.nn.functional.interpolate(coarse, size=size, mode="bicubic", align_corners=True)[0]
    return (image.clamp(0, 1) * 255).round().to(torch.uint8)


def _warp(transform, image, mask):
    out_image, out_mask = transform(tv_tensors.Image(image), tv_tensors.Mask(mask))
    assert type(out_image) is tv_tensors.Image and type(out_mask) is tv_tensors.Mask
    return out_image.as_subclass(torch.Tensor), out_mask.as_subclass(torch.Tensor)


@pytest.mark.parametrize(
    "image",
    [_smooth_image(3), _smooth_image(1).float() / 255, _smooth_image(1, size=(65, 33))],
    ids=["rgb-uint8", "gray-float", "gray-uint8-odd"],
)
def test_shapes_dtypes_and_labels_are_kept(image):
    mask = torch.tensor([0, 3, 7, IGNORE_INDEX])[(image[0].float() / image[0].float().max() * 3.999).long()]
    for seed in range(3):
        torch.manual_seed(seed)
        out_image, out_mask = _warp(ElasticDeformation(), image, mask)
        assert out_image.shape == image.shape and out_image.dtype == image.dtype
        assert out_mask.shape == mask.shape and out_mask.dtype == mask.dtype
        assert set(out_mask.unique().tolist()) <= {0, 3, 7, IGNORE_INDEX}
        assert not torch.equal(out_mask, mask)  # it did deform


def test_image_and_mask_are_deformed_alike():
    # Big enough blobs that few pixels lie on a boundary, where bilinear and nearest sampling may differ.
    image = _smooth_image(1, size=(128, 160))
    threshold = int(image.float().median())
    mask = (image[0] > threshold).long()
    agreement = []
    for seed in range(5):
        torch.manual_seed(seed)
        out_image, out_mask = _warp(ElasticDeformation(sigma=10.0), image, mask)
        assert (out_mask != mask).float().mean() > 0.02  # moved enough for the check to mean something
        agreement.append(((out_image[0] > threshold).long() == out_mask).float().mean().item())
    assert min(agreement) > 0.98, agreement


def test_sigma_zero_and_p_zero_are_the_identity():
    image, mask = _smooth_image(3), torch.randint(0, 5, (64, 80))
    for transform in (ElasticDeformation(sigma=0.0), ElasticDeformation(p=0.0)):
        out_image, out_mask = _warp(transform, image, mask)
        assert torch.equal(out_image, image) and torch.equal(out_mask, mask)


def test_reproducible_under_torch_manual_seed():
    image, mask = _smooth_image(3), torch.randint(0, 5, (64, 80))
    runs = []
    for seed in (0, 0, 1):
        torch.manual_seed(seed)
        runs.append(_warp(ElasticDeformation(), image, mask))
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])
    assert not torch.equal(runs[0][0], runs[2][0])


def test_coarse_displacements_have_sigma_pixels_standard_deviation():
    transform = ElasticDeformation(grid=3, sigma=10.0)
    image = tv_tensors.Image(torch.zeros(1, 33, 41))
    torch.manual_seed(0)
    samples = []
    for _ in range(200):
        grid = transform.make_params([image])["grid"][0]  # (H, W, 2), normalised sample positions
        # Back to pixels, minus the identity: the displacement at the 3 × 3 coarse points.
        x = ((grid[..., 0] + 1) * 41 - 1) / 2 - torch.arange(41)
        y = ((grid[..., 1] + 1) * 33 - 1) / 2 - torch.arange(33).view(-1, 1)
        samples += [x[::16, ::20].flatten(), y[::16, ::20].flatten()]
    std = torch.cat(samples).std().item()
    assert 9.0 < std < 11.0


def test_batched_images_and_uint8_masks():
    image = torch.stack([_smooth_image(3), _smooth_image(3, seed=1)])  # (2, 3, H, W)
    mask = torch.randint(0, 3, (2, 64, 80), dtype=torch.uint8)
    torch.manual_seed(0)
    out_image, out_mask = _warp(ElasticDeformation(), image, mask)
    assert out_image.shape == image.shape and out_mask.dtype == torch.uint8
    torch.manual_seed(0)
    single = _warp(ElasticDeformation(), image[1], mask[1])
    assert torch.equal(out_image[1], single[0]) and torch.equal(out_mask[1], single[1])


def test_train_transforms_elastic_option():
    image, mask = _smooth_image(3), torch.randint(0, 5, (64, 80))
    assert not any(isinstance(t, ElasticDeformation) for t in train_transforms(32).pipeline.transforms)
    transform = train_transforms(32, elastic=True)
    (elastic,) = [t for t in transform.pipeline.transforms if isinstance(t, ElasticDeformation)]
    assert elastic.sigma == 10.0 and train_transforms(32, elastic=4.0).pipeline.transforms[3].sigma == 4.0
    torch.manual_seed(0)
    out_image, out_mask = transform(image, mask)
    assert out_image.shape == (3, 32, 32) and out_mask.shape == (32, 32)
    assert set(out_mask.unique().tolist()) <= {0, 1, 2, 3, 4, IGNORE_INDEX}
    # Also usable on its own in a pair pipeline.
    paired = PairedTransform(ElasticDeformation())
    assert paired(image, mask)[1].shape == (64, 80)


def test_bad_arguments():
    for kwargs, match in (({"grid": 1}, "grid"), ({"sigma": -1.0}, "sigma"), ({"p": 1.5}, "p must")):
        with pytest.raises(ValueError, match=match):
            ElasticDeformation(**kwargs)
