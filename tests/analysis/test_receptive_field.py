"""Theoretical receptive fields: hand-computed chains, and the published figures of VGG-16
and ResNet-50 (Araujo, Norris & Sim, "Computing Receptive Fields of Convolutional Neural
Networks", Distill 2019), walked on the meta device."""

import pytest
import torch
from torch import nn

from atrous.analysis import Field, receptive_fields, trace_model
from atrous.analysis import fields as rf
from atrous.backbones import create_backbone


def _chain():
    """conv3 s1 (no padding), conv3 s2 (pad 1), conv3 rate 2 (no padding), maxpool 2."""
    return nn.Sequential(
        nn.Conv2d(3, 4, 3),
        nn.Conv2d(4, 4, 3, stride=2, padding=1),
        nn.Conv2d(4, 4, 3, dilation=2),
        nn.MaxPool2d(2),
    )


def test_a_small_chain_by_hand():
    """Per layer, r_out = r_in + (k_eff − 1)·j_in, j_out = j_in·s,
    start_out = start_in + ((k_eff − 1)/2 − p)·j_in, with k_eff = d·(k − 1) + 1:

    conv3 s1 p0:  r = 1 + 2·1 = 3,   j = 1, start = 0 + (1 − 0)·1 = 1
    conv3 s2 p1:  r = 3 + 2·1 = 5,   j = 2, start = 1 + (1 − 1)·1 = 1
    conv3 d2 p0:  r = 5 + 4·2 = 13,  j = 2, start = 1 + (2 − 0)·2 = 5
    maxpool 2:    r = 13 + 1·2 = 15, j = 4, start = 5 + (0.5 − 0)·2 = 6
    """
    with torch.device("meta"):
        model = _chain()
    trace = trace_model(model, (33, 41))
    expected = [(3, 1, 1), (5, 2, 1), (13, 2, 5), (15, 4, 6)]
    for i, (size, jump, start) in enumerate(expected):
        fields = trace.module(str(i)).outputs[0].fields
        assert fields.h == fields.w == Field(size, jump, start), i
    # The same numbers from the arithmetic alone.
    f = rf.INPUT
    for layer in model:
        if isinstance(layer, nn.Conv2d):
            f = rf.conv(f, layer.kernel_size[0], layer.stride[0], layer.padding[0], layer.dilation[0])
        else:
            f = rf.conv(f, layer.kernel_size, layer.stride, layer.padding)
    assert f == Field(15, 4, 6)


class _Branches(nn.Module):
    """A residual unit and two parallel branches, concatenated: the union takes the largest."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 3, 3, padding=1)
        self.b = nn.Conv2d(3, 3, 3, padding=4, dilation=4)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        x = x + self.a(x)  # residual: the larger field (3) wins
        g = nn.functional.interpolate(self.pool(x), size=x.shape[-2:], mode="bilinear", align_corners=False)
        return torch.cat([self.a(x), self.b(x), g], dim=1)


def test_parallel_branches_take_the_union_and_global_pooling_sees_everything():
    with torch.device("meta"):
        model = _Branches()
    trace = trace_model(model, (21, 21))
    out = trace.outputs[0].fields.h
    assert trace.module("b").outputs[0].fields.h == Field(3 + 8, 1, 0)
    pooled = trace.module("pool").outputs[0].fields.h
    assert pooled.size == 3 + 20 and pooled.start == 10  # the whole 21-pixel map, its centre
    assert out.jump == 1 and out.span(10) == (-1, 21)  # the centre pixel sees the whole map (and padding)
    # The broadcast pooled value is the same for every pixel, off the straight line
    # start + i·jump: the slack keeps every pixel's true field, [-1, 21], inside its bounds.
    for i in (0, 20):
        first, last = out.bounds(i)
        assert first <= -1 and last >= 21


def test_the_field_functions():
    f = Field(5, 2, 1)
    assert rf.union([f, Field(9, 2, 1)]) == Field(9, 2, 1)
    assert rf.pad(f, 3) == Field(5, 2, -5)  # three cells before cell 0
    assert rf.select(f, 2, 3) == Field(5, 6, 5)
    # Bilinear ×2 reads two neighbouring cells: one input jump wider, half the jump.
    up = rf.resize(f, 8, 16, "bilinear", False)
    assert up.size == 5 + 2 and up.jump == 1 and up.slack > 0
    assert rf.resize(f, 8, 16, "nearest").size == 5
    # A 2×2, stride-2 transposed convolution reads one cell per output.
    assert rf.transposed(f, 2, 2, 0, 1, 8, 16).size == 5
    # Global pooling of 7 cells: the union of their fields, centred on cell 3.
    assert rf.window(f, 7, 1) == Field(5 + 6 * 2, 14, 1 + 3 * 2)


def _walk_stages(backbone, size=(224, 224)):
    return {row.name: row for row in receptive_fields(backbone, size) if row.part == "stage"}


def test_vgg16_pool5_is_212_pixels_with_jump_32():
    """Araujo et al.'s table: VGG-16 pool5, receptive field 212, effective stride 32.

    By hand: thirteen 3×3 convolutions and five 2×2 poolings; the k-th block's
    convolutions run at jump 2^(k−1): 2·(2·1 + 2·2 + 3·4 + 3·8 + 3·16) = 180, the poolings
    add 1 + 2 + 4 + 8 + 16 = 31, and 1 + 180 + 31 = 212. Each 2×2 pooling moves the start
    by half its input jump: 0.5 + 1 + 2 + 4 + 8 = 15.5.
    """
    with torch.device("meta"):
        vgg = create_backbone("vgg16")  # torchvision's layout: features.0 … features.30
    assert [type(m).__name__ for m in vgg.features[:5]] == ["Conv2d", "ReLU", "Conv2d", "ReLU", "MaxPool2d"]
    pool5 = _walk_stages(vgg)["features.30"]
    assert (pool5.h.size, pool5.h.jump, pool5.h.start) == (212, 32, 15.5)
    assert [r.h.size for r in _walk_stages(vgg).values()] == [6, 16, 44, 100, 212]


RESNET50_STAGES = {"relu": (7, 2), "layer1": (35, 4), "layer2": (91, 8), "layer3": (267, 16), "layer4": (427, 32)}


def test_resnet50_stages_in_torchvision_layout():
    """torchvision's ResNet-50 (v1.5: the stride on each stage's first 3×3):

    conv1 7×7 s2: r 7, j 2 · maxpool 3×3 s2: 7 + 2·2 = 11, j 4
    layer1, 3 units at j 4: 11 + 3·8 = 35
    layer2: the first 3×3 (stride 2) at j 4: 35 + 8 = 43, j 8; 3 more units: 43 + 3·16 = 91
    layer3: 91 + 16 = 107, j 16; 5 more: 107 + 5·32 = 267
    layer4: 267 + 32 = 299, j 32; 2 more: 299 + 2·64 = 427

    Araujo et al.'s table gives 483 for TF-slim's resnet_v1_50, which strides in the *last*
    unit of each block: more 3×3 convolutions run after each downsampling, at the larger
    jump (27, 35 · 83, 99 · 259, 291 · 483). The original (Caffe) ResNet strides in the
    first 1×1, which also puts every 3×3 after it and gives 483 too. atrous follows
    torchvision, whose checkpoints it loads: 427.

    Padding is symmetric ('same') throughout, so every start is 0.
    """
    with torch.device("meta"):
        resnet = create_backbone("resnet50")
    assert resnet.layer2[0].conv2.stride == (2, 2) and resnet.layer2[0].conv1.stride == (1, 1)
    stages = _walk_stages(resnet)
    assert {name: (r.h.size, r.h.jump) for name, r in stages.items()} == RESNET50_STAGES
    assert all(r.h.start == 0 and r.h == r.w for r in stages.values())


@pytest.mark.parametrize("output_stride", [8, 16])
def test_dilation_keeps_the_field_and_shrinks_the_jump(output_stride):
    """DeepLab v3 §3.1: striding traded for dilation keeps each stage's field in pixels."""
    with torch.device("meta"):
        resnet = create_backbone("resnet50", output_stride=output_stride)
    stages = _walk_stages(resnet)
    for name, (size, jump) in RESNET50_STAGES.items():
        assert stages[name].h.size == size
        assert stages[name].h.jump == min(jump, output_stride)


class _Attention(nn.Module):
    """Squeeze-and-excitation style: a map times its own global average (broadcast)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        x = self.conv(x)
        return x * x.mean(dim=(2, 3), keepdim=True)


def test_a_broadcast_global_value_is_pointwise_not_unknown():
    with torch.device("meta"):
        model = _Attention()
    trace = trace_model(model, (15, 15))
    out = trace.outputs[0].fields.h
    assert trace.conservative == []  # a global mean and a broadcast product: both modelled
    assert out.span(7) == (-1, 15)  # the centre pixel: its 3×3 field and the whole map's
