"""Tiled inference: overlap-tile for the unpadded U-Net, blended sliding windows for the rest."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import atrous
from atrous.inference.tiling import predict_tiled
from atrous.inference.tta import predict_probabilities


@pytest.fixture(scope="module")
def small_unet():
    torch.manual_seed(0)
    return atrous.create_model("unet", base_chs=4).eval()


@pytest.mark.parametrize("tile", [4, 36, 200])
def test_overlap_tile_equals_one_pass_over_the_whole_image(small_unet, tile):
    # Tile origins on the 16-pixel pooling grid: every tile sees what the whole pass sees.
    x = torch.randn(2, 3, 90, 110)
    with torch.no_grad():
        whole = small_unet(x)
        tiled = predict_tiled(small_unet, x, tile=tile, batch_size=3)
    assert tiled.shape == whole.shape == (2, 2, 90, 110)
    assert (tiled - whole).abs().max().item() < 1e-4


def test_overlap_tile_on_an_image_smaller_than_a_tile(small_unet):
    x = torch.randn(1, 3, 10, 7)
    with torch.no_grad():
        assert torch.allclose(predict_tiled(small_unet, x, tile=36), small_unet(x), atol=1e-4)


class PerPixel(nn.Module):
    """A model whose output at a pixel depends on that pixel only: tiling cannot change it."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.calls: list[tuple[int, ...]] = []

    def forward(self, x):
        self.calls.append(tuple(x.shape))
        return self.conv(x)


@pytest.mark.parametrize("size", [(50, 70), (20, 9), (64, 64)])
def test_sliding_window_blend_is_exact_for_a_per_pixel_model(size):
    model = PerPixel().eval()
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        tiled = predict_tiled(model, x, tile=32, overlap=0.5, batch_size=4)
        assert torch.allclose(tiled, model(x), atol=1e-5)
    # Windows never exceed the tile; an image smaller than a tile is mirror-padded up to it.
    assert all(s[-2:] == (32, 32) for s in model.calls[:-1])
    assert all(s[0] <= 4 for s in model.calls[:-1])


def test_sliding_window_covers_every_pixel_and_weights_window_centres():
    class Position(nn.Module):
        """Outputs 1 everywhere: the blend must normalise to exactly 1."""

        def forward(self, x):
            return torch.ones(x.shape[0], 1, *x.shape[-2:])

    out = predict_tiled(Position(), torch.zeros(1, 3, 100, 130), tile=48, overlap=0.25)
    assert out.shape == (1, 1, 100, 130)
    assert torch.allclose(out, torch.ones_like(out))


def test_tiles_through_the_evaluator_with_flip(small_unet):
    x = torch.randn(1, 3, 60, 60)
    with torch.no_grad():
        plain = predict_probabilities(small_unet, x, flip=True)
        tiled = predict_probabilities(small_unet, x, flip=True, tile=20)
    assert torch.allclose(plain, tiled, atol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"tile": 0}, "tile must be a positive integer"), ({"tile": 8, "overlap": 1.0}, r"overlap must be in \[0, 1\)")],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        predict_tiled(PerPixel(), torch.zeros(1, 3, 8, 8), **kwargs)
