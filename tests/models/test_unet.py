"""U-Net (Ronneberger et al. 2015): the paper's size arithmetic (572 → 388), valid
convolutions with crop-and-concatenate, the overlap-tile forward, and unet_padded."""

import math

import numpy as np
import pytest
import torch
from tests.helpers import randomize_norm_stats
from torch import nn

import atrous
from atrous.models.unet import input_size_for, output_size, valid_output_size

# Fig. 1: 3×3 convolutions (C_in, C_out), contracting then expansive path.
ENCODER_CONVS = [
    (1, 64),
    (64, 64),
    (64, 128),
    (128, 128),
    (128, 256),
    (256, 256),
    (256, 512),
    (512, 512),
    (512, 1024),
    (1024, 1024),
]
UP_CONVS = [(1024, 512), (512, 256), (256, 128), (128, 64)]  # 2×2 up-convolutions
DECODER_CONVS = [(1024, 512), (512, 512), (512, 256), (256, 256), (256, 128), (128, 128), (128, 64), (64, 64)]


def _numpy_mirror(x, top, bottom, left, right):
    pads = ((0, 0), (0, 0), (top, bottom), (left, right))
    return torch.from_numpy(np.pad(x.numpy(), pads, mode="reflect"))


def _small_unet(**kwargs):
    kwargs.setdefault("in_chans", 1)
    kwargs.setdefault("base_chs", 2)
    return atrous.create_model("unet", **kwargs).eval()


@pytest.fixture(scope="module")
def paper_unet():
    return atrous.create_model("unet", in_chans=1, num_classes=2)


@pytest.fixture(scope="module")
def tiny_unet():
    torch.manual_seed(5)
    return _small_unet(base_chs=4)


# --- size arithmetic ---------------------------------------------------------------------


def test_papers_sizes(paper_unet):
    assert output_size(572) == 388
    assert input_size_for(388) == 572
    assert paper_unet.output_size(572) == 388 and paper_unet.input_size_for(388) == 572
    assert paper_unet.depth == 4 and len(paper_unet.backbone.stages) == 5
    assert paper_unet.context == 92  # (572 − 388) / 2
    assert [s.num_chs for s in paper_unet.backbone.feature_info] == [64, 128, 256, 512, 1024]


def test_valid_sizes_follow_the_closed_form():
    """Depth 4 loses 184 pixels and needs every pre-pooling map even: the valid inputs are
    188 + 16k, with output size − 184."""
    for s in range(1, 700):
        if s >= 188 and (s - 188) % 16 == 0:
            assert output_size(s) == s - 184, s
        else:
            with pytest.raises(ValueError, match=rf"input size {s} "):
                output_size(s)
    for n in range(1, 400):
        expected = next(m for m in range(4, 1000) if m >= n and m % 16 == 4)
        assert valid_output_size(n) == expected, n
        assert input_size_for(n) == expected + 184, n
    with pytest.raises(ValueError, match="output size must be >= 1"):
        input_size_for(0)


def test_depth_changes_the_arithmetic():
    # Depth 1: s − 4 even, (s − 4) / 2 − 4 ≥ 1, then ×2 − 4: 2·((s − 4)/2 − 4) − 4 = s − 16.
    assert output_size(30, depth=1) == 14
    assert input_size_for(14, depth=1) == 30
    with pytest.raises(ValueError, match="depth"):
        output_size(572, depth=0)


# --- the network ---------------------------------------------------------------------------


def test_parameter_count_matches_figure_1(paper_unet):
    expected = (
        sum(9 * c_in * c_out + c_out for c_in, c_out in ENCODER_CONVS + DECODER_CONVS)
        + sum(4 * c_in * c_out + c_out for c_in, c_out in UP_CONVS)
        + (64 * 2 + 2)  # final 1×1 convolution to 2 classes
    )
    assert sum(p.numel() for p in paper_unet.parameters()) == expected == 31_030_658
    assert not [m for m in paper_unet.modules() if isinstance(m, nn.BatchNorm2d)]
    convs = [m for m in paper_unet.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) == 18 and all(m.padding == (0, 0) for m in convs)  # unpadded


def test_crop_and_concatenate_channels(paper_unet):
    decoder = paper_unet.classifier
    assert [c.conv1.in_channels for c in decoder.convs] == [1024, 512, 256, 128]
    assert [c.conv1.out_channels for c in decoder.convs] == [512, 256, 128, 64]
    ups = [u.up for u in decoder.ups]
    assert all(isinstance(u, nn.ConvTranspose2d) and u.kernel_size == (2, 2) and u.stride == (2, 2) for u in ups)
    assert [(u.in_channels, u.out_channels) for u in ups] == UP_CONVS


def test_forward_valid_maps_572_to_388_with_figure_1s_shapes():
    model = _small_unet()
    store = {}
    hooks = [model.backbone.register_forward_hook(lambda m, i, o: store.setdefault("encoder", o))]
    hooks += [
        conv.register_forward_pre_hook(lambda m, args, i=i: store.setdefault(f"cat{i}", args[0]))
        for i, conv in enumerate(model.classifier.convs)
    ]
    hooks += [
        conv.register_forward_hook(lambda m, i, o, k=k: store.setdefault(f"dec{k}", o))
        for k, conv in enumerate(model.classifier.convs)
    ]
    try:
        with torch.no_grad():
            out = model.forward_valid(torch.randn(1, 1, 572, 572))
    finally:
        for hook in hooks:
            hook.remove()
    assert out.shape == (1, 2, 388, 388)
    encoder = store["encoder"]
    assert [f.shape[-1] for f in encoder] == [568, 280, 136, 64, 28]
    assert [store[f"dec{k}"].shape[-1] for k in range(4)] == [52, 100, 196, 388]
    # "copy and crop": the 64×64 level-4 map is centre-cropped to the 56×56 up-convolved map.
    cat = store["cat0"]
    assert cat.shape == (1, 32, 56, 56)
    assert torch.equal(cat[:, :16], encoder[3][..., 4:60, 4:60])
    cat = store["cat3"]
    assert cat.shape == (1, 4, 392, 392)
    assert torch.equal(cat[:, :2], encoder[0][..., 88:480, 88:480])


def test_forward_valid_smallest_input(tiny_unet):
    with torch.no_grad():
        assert tiny_unet.forward_valid(torch.randn(2, 1, 188, 188)).shape == (2, 2, 4, 4)


def test_valid_network_is_translation_equivariant_for_multiples_of_16(tiny_unet):
    x = torch.randn(1, 1, 220, 220)
    with torch.no_grad():
        full = tiny_unet.forward_valid(x)  # 36×36
        shifted = tiny_unet.forward_valid(x[..., 16:220, 16:220])  # 204 → 20
        half_shifted = tiny_unet.forward_valid(x[..., 8:212, 8:212])
    assert full.shape[-1] == 36 and shifted.shape[-1] == 20
    torch.testing.assert_close(shifted, full[..., 16:36, 16:36], atol=1e-5, rtol=1e-5)
    # A shift of 8 moves the 2×2 pooling grids at the deepest level: not equivariant.
    assert (half_shifted - full[..., 8:28, 8:28]).abs().max().item() > 1e-3


@pytest.mark.parametrize("size", [(33, 47), (5, 120), (1, 1), (100, 100)])
def test_forward_returns_the_input_size(tiny_unet, size):
    with torch.no_grad():
        assert tiny_unet(torch.randn(1, 1, *size)).shape == (1, 2, *size)


def test_forward_is_overlap_tile_with_mirrored_context(tiny_unet):
    """§2, Fig. 2: 92 mirrored pixels of context before the image, and after it enough
    to reach a valid size (100 → output 116 → input 300: 108 after)."""
    x = torch.randn(1, 1, 100, 100)
    with torch.no_grad():
        out = tiny_unet(x)
        padded = _numpy_mirror(x, 92, 108, 92, 108)
        assert padded.shape[-1] == 300
        valid = tiny_unet.forward_valid(padded)
    assert valid.shape[-1] == 116
    torch.testing.assert_close(out, valid[..., :100, :100])
    # Zero padding instead of mirroring would give a different border.
    zero = nn.functional.pad(x, (92, 108, 92, 108))
    with torch.no_grad():
        assert (tiny_unet.forward_valid(zero)[..., :100, :100] - out).abs().max().item() > 1e-4


# --- unet_padded and options ----------------------------------------------------------------


def test_unet_padded_keeps_the_size():
    model = atrous.create_model("unet_padded", num_classes=3, base_chs=4).eval()
    assert [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(m.padding == (1, 1) for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3))
    randomize_norm_stats(model)
    x = torch.randn(1, 3, 33, 47)
    with torch.no_grad():
        out = model(x)
        assert out.shape == (1, 3, 33, 47)
        # Mirror-padded to 48×48 (a multiple of 2^4) at the bottom and right, then cropped.
        expected = model.forward_valid(_numpy_mirror(x, 0, 15, 0, 1))[..., :33, :47]
    torch.testing.assert_close(out, expected)
    assert model.output_size(47) == 47 and model.input_size_for(47) == 48


@pytest.mark.parametrize("name", ["unet", "unet_padded"])
@pytest.mark.parametrize("upsample", ["bilinear", "nearest", "transposed"])
def test_every_upsample_mode_works(name, upsample):
    model = atrous.create_model(name, in_chans=1, base_chs=2, upsample=upsample).eval()
    ups = model.classifier.ups
    if upsample == "transposed":
        assert all(isinstance(u.up, nn.ConvTranspose2d) and u.proj is None for u in ups)
    else:
        assert all(u.up.mode == upsample and u.up.factor == 2 and u.proj.kernel_size == (1, 1) for u in ups)
        assert [(u.proj.in_channels, u.proj.out_channels) for u in ups] == [(32, 16), (16, 8), (8, 4), (4, 2)]
    with torch.no_grad():
        assert model(torch.randn(1, 1, 21, 30)).shape == (1, 2, 21, 30)
        if name == "unet":
            assert model.forward_valid(torch.randn(1, 1, 188, 204)).shape == (1, 2, 4, 20)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"aux": True}, "aux: U-Net has no auxiliary head"),
        ({"pretrained_backbone": "vgg16.pth"}, "pretrained_backbone: U-Net's encoder has no pretrained weights"),
        ({"output_stride": 8}, "output_stride: U-Net of depth 4 has stride 16, got 8"),
        ({"multi_grid": (1, 2, 4)}, "multi_grid"),
        ({"base_chs": 3}, "base_chs must be an even integer"),
        ({"depth": 0}, "depth must be an integer >= 1"),
        ({"upsample": "bicubic"}, "upsample must be one of"),
    ],
)
@pytest.mark.parametrize("name", ["unet", "unet_padded"])
def test_bad_options_are_rejected(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        atrous.create_model(name, **{"base_chs": 2, **kwargs})


def test_output_stride_is_fixed():
    model = _small_unet(output_stride=16)
    assert model.output_stride == 16
    with pytest.raises(ValueError, match="U-Net"):
        model.set_output_stride(8)


def test_save_and_load_round_trip(tmp_path):
    model = atrous.create_model("unet_padded", num_classes=3, base_chs=8, upsample="bilinear", depth=3)
    randomize_norm_stats(model).eval()
    x = torch.randn(1, 3, 29, 35)
    with torch.no_grad():
        expected = model(x)
    model.save_pretrained(tmp_path / "unet")
    loaded = atrous.load_model(tmp_path / "unet")
    assert loaded.config["base_chs"] == 8 and loaded.config["upsample"] == "bilinear"
    assert loaded.depth == 3 and loaded.padding
    with torch.no_grad():
        assert torch.equal(loaded(x), expected)


# --- initialisation (§3) ----------------------------------------------------------------------


def test_convolutions_start_from_he_initialisation(paper_unet):
    # §3: N(0, 2/N), N = 9 · C_in for a 3×3 convolution ("N = 9 · 64 = 576").
    conv = paper_unet.backbone.stages[4].conv2  # 1024 → 1024, 9.4M weights
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (9 * 1024)), rel=0.01)
    assert not conv.bias.any()


def test_up_convolutions_start_from_he_initialisation(paper_unet):
    # A 2×2 / stride-2 up-convolution output neuron sees C_in inputs (one kernel tap).
    up = paper_unet.classifier.ups[0].up  # 1024 → 512
    assert up.weight.std().item() == pytest.approx(math.sqrt(2 / 1024), rel=0.02)
