"""Reading images and masks: every bad file gets an ImageReadError that names it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from tests.data.helpers import random_rgb, save

from atrous.data.errors import ImageReadError, MaskValueError
from atrous.data.io import read_image, read_image_size, read_mask, read_raw_mask


def test_read_image_rgb(tmp_path):
    array = random_rgb(5, 7)
    image = read_image(save(tmp_path / "a.png", array))
    assert image.dtype == torch.uint8 and image.shape == (3, 5, 7)
    assert torch.equal(image, torch.from_numpy(array).permute(2, 0, 1))


def test_missing_file(tmp_path):
    path = tmp_path / "nope.png"
    with pytest.raises(ImageReadError, match=r"nope\.png does not exist"):
        read_image(path)
    with pytest.raises(ImageReadError, match=r"nope\.png does not exist"):
        read_mask(path)


def test_random_bytes_png(tmp_path):
    path = tmp_path / "noise.png"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8).tobytes())
    with pytest.raises(ImageReadError, match=r"noise\.png is not an image"):
        read_image(path)


@pytest.mark.parametrize("content", [b"", b"just some text\n"], ids=["empty", "text"])
def test_non_image_file(tmp_path, content):
    path = tmp_path / "notes.jpg"
    path.write_bytes(content)
    with pytest.raises(ImageReadError, match=r"notes\.jpg is not an image"):
        read_image(path)
    with pytest.raises(ImageReadError, match=r"notes\.jpg"):
        read_mask(path)


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_truncated_file(tmp_path, ext):
    whole = save(tmp_path / f"whole{ext}", random_rgb(64, 64))
    cut = tmp_path / f"cut{ext}"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(ImageReadError, match=rf"cut\{ext} could not be decoded.*truncated"):
        read_image(cut)


@pytest.mark.parametrize("pixels", [150, 400], ids=["over-limit-warning", "over-twice-limit-error"])
def test_decompression_bomb(tmp_path, monkeypatch, pixels):
    # Pillow warns between MAX_IMAGE_PIXELS and twice that, and raises above: both become our error.
    path = save(tmp_path / "big.png", np.zeros((10, pixels // 10), dtype=np.uint8))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(ImageReadError, match=r"big\.png is too large.*MAX_IMAGE_PIXELS"):
        read_image(path)
    with pytest.raises(ImageReadError, match=r"big\.png is too large"):
        read_mask(path)


def test_grayscale_image_to_three_channels_and_mask_values_kept(tmp_path):
    gray = np.arange(20, dtype=np.uint8).reshape(4, 5)
    path = save(tmp_path / "gray.png", gray)
    image = read_image(path)
    assert image.shape == (3, 4, 5)
    assert all(torch.equal(image[c], torch.from_numpy(gray)) for c in range(3))
    mask = read_mask(path)
    assert mask.dtype == torch.int64 and torch.equal(mask, torch.from_numpy(gray).long())


def test_rgba_drops_alpha_for_image_and_mask(tmp_path):
    rgba = np.concatenate([random_rgb(4, 5), np.zeros((4, 5, 1), np.uint8)], axis=2)  # fully transparent
    image = read_image(save(tmp_path / "rgba.png", rgba))
    assert torch.equal(image, torch.from_numpy(rgba[..., :3]).permute(2, 0, 1))
    labels = np.array([[0, 1, 2, 3, 4]] * 4, np.uint8)
    gray_rgba = np.stack([labels, labels, labels, np.full_like(labels, 7)], axis=2)
    mask = read_mask(save(tmp_path / "mask_rgba.png", gray_rgba))
    assert torch.equal(mask, torch.from_numpy(labels).long())


def test_16_bit_image_scaled_and_mask_kept(tmp_path):
    values = np.array([[0, 257 * 100, 65535], [1000, 2000, 3000]], dtype=np.uint16)
    path = save(tmp_path / "deep.png", values)
    with Image.open(path) as stored:
        assert stored.mode == "I;16"
    image = read_image(path)
    assert image.dtype == torch.uint8
    assert image[0].tolist() == [[0, 100, 255], [4, 8, 12]]
    assert read_mask(path).tolist() == values.astype(np.int64).tolist()


def test_palette_mask_gives_indices_not_colours(tmp_path):
    indices = np.array([[0, 1, 2], [2, 1, 0]], dtype=np.uint8)
    palette = [0, 0, 0, 128, 0, 0, 0, 128, 0]
    path = save(tmp_path / "voc.png", indices, palette=palette)
    with Image.open(path) as stored:
        assert stored.mode == "P"
    assert read_mask(path).tolist() == indices.tolist()
    # As an image, a palette file shows its colours.
    assert read_image(path)[:, 0, 1].tolist() == [128, 0, 0]


def test_colour_mask_needs_a_color_map(tmp_path):
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[0, 0] = (255, 0, 0)
    rgb[1, 2] = (0, 0, 255)
    path = save(tmp_path / "colours.png", rgb)
    assert read_raw_mask(path).shape == (2, 3, 3)
    with pytest.raises(MaskValueError, match=r"colours\.png is a colour \(RGB\) mask; pass color_map"):
        read_mask(path)
    mask = read_mask(path, color_map={(0, 0, 0): 0, (255, 0, 0): 1, (0, 0, 255): 2})
    assert mask.tolist() == [[1, 0, 0], [0, 0, 2]]
    with pytest.raises(
        MaskValueError, match=r"colours\.png has colours that are not in color_map: \(0, 0, 255\) × 1 px"
    ):
        read_mask(path, color_map={(0, 0, 0): 0, (255, 0, 0): 1})


def test_float_and_bilevel_masks(tmp_path):
    path = save(tmp_path / "float.tif", np.ones((2, 2), np.float32))
    with pytest.raises(MaskValueError, match=r"float\.tif is a floating-point image"):
        read_mask(path)
    bilevel = save(tmp_path / "bits.png", np.array([[True, False]]))
    assert read_mask(bilevel).tolist() == [[1, 0]]


def test_exif_orientation_rotates_image_and_mask_together(tmp_path):
    # Orientation 6: the stored pixels must be turned 90° clockwise to stand upright.
    colours = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)
    labels = np.zeros((4, 6), np.uint8)
    labels[:, 2:4], labels[:, 4:] = 1, 2
    labels[0, 0] = 2  # break the symmetry so a wrong rotation shows
    image_path = save(tmp_path / "photo.png", colours[labels], exif_orientation=6)
    mask_path = save(tmp_path / "photo_mask.png", labels, exif_orientation=6)
    image, mask = read_image(image_path), read_mask(mask_path)
    upright = np.rot90(labels, k=-1)
    assert mask.shape == (6, 4) and mask.tolist() == upright.tolist()
    assert torch.equal(image, torch.from_numpy(colours[upright]).permute(2, 0, 1))
    assert read_image_size(image_path) == (6, 4)


def test_exif_orientation_in_jpeg(tmp_path):
    path = save(tmp_path / "photo.jpg", np.full((4, 6, 3), 200, np.uint8), exif_orientation=6, quality=95)
    assert read_image(path).shape == (3, 6, 4)
