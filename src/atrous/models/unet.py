"""U-Net: Ronneberger, Fischer & Brox, "U-Net: Convolutional Networks for Biomedical Image
Segmentation" (MICCAI 2015), arXiv:1505.04597.

§2 and Fig. 1: a contracting path of repeated unpadded 3×3 convolutions (each followed by
ReLU) and 2×2 max pooling with stride 2, doubling the channels at each downsampling; an
expansive path of 2×2 "up-convolutions" that halve the channels, concatenation with the
correspondingly cropped feature map of the contracting path, and two 3×3 convolutions;
a final 1×1 convolution to the classes. With 64 channels at the top and four
downsamplings, a 572×572 input gives a 388×388 output (:func:`output_size`,
:func:`input_size_for`).

Two registered variants:

* ``unet`` — the paper's network: unpadded ("valid") convolutions, no normalisation.
  ``model(x)`` applies the overlap-tile strategy to the whole input (§2, Fig. 2): it
  mirror-pads the image by the network's context (92 pixels on each side for depth 4) up
  to a valid input size, runs the network, and crops the logits to the input's H×W, so it
  obeys the same contract as every atrous model. :meth:`UNet.forward_valid` is the bare
  network (572 → 388) for tiled inference.
* ``unet_padded`` — 'same' convolutions with batch normalisation, the common modern form:
  the output is the input size; inputs are mirror-padded to a multiple of 2^depth and
  cropped back.

``upsample`` chooses the expansive path's upsampling: ``transposed`` (the paper's 2×2
up-convolution), or ``bilinear`` / ``nearest`` interpolation followed by a 1×1 convolution
that halves the channels. Weights start from the paper's initialisation (§3: Gaussian
with standard deviation sqrt(2/N), N the incoming nodes of a neuron — He's fan-in rule).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from ..backbones.features import FeatureInfo, FeatureSpec
from ..layers import Upsample, crop, mirror_pad
from ._registry import register_model
from .pretrained import records_config
from .segmentor import SegmentationModel, check_input, check_num_classes, check_upsample_mode

UNET_DEPTH = 4  # downsamplings in Fig. 1


def _check_depth(depth: int) -> None:
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be an integer >= 1, got {depth!r}")


def output_size(input_size: int, depth: int = UNET_DEPTH) -> int:
    """Output side of the unpadded U-Net for an input side (572 → 388 at depth 4).

    Raises ValueError when the size is not valid: every 2×2 pooling must see an even map,
    and every map must stay at least 1 pixel after its two 3×3 convolutions.
    """
    _check_depth(depth)
    size = int(input_size)
    for level in range(depth):
        size -= 4  # two unpadded 3×3 convolutions
        if size < 2 or size % 2:
            raise ValueError(
                f"input size {input_size} is not valid for the unpadded U-Net: the map before pooling "
                f"{level + 1} would be {size} pixels (it must be even and >= 2); "
                f"{_nearest_valid_inputs(int(input_size), depth)} (input_size_for(output_size) picks one)"
            )
        size //= 2
    size -= 4  # the bottom two convolutions
    if size < 1:
        raise ValueError(f"input size {input_size} is too small for the unpadded U-Net (the bottom map vanishes)")
    for _ in range(depth):
        size = 2 * size - 4  # 2× up-convolution, then two 3×3 convolutions
    if size < 1:
        raise ValueError(f"input size {input_size} is too small for the unpadded U-Net")
    return size


def _nearest_valid_inputs(input_size: int, depth: int) -> str:
    """ "the nearest valid sizes are 348 and 364": the valid inputs around ``input_size``."""
    below, size = None, input_size_for(1, depth)
    while size < input_size:
        below, size = size, input_size_for(output_size(size, depth) + 1, depth)
    return f"the nearest valid sizes are {below} and {size}" if below else f"the smallest valid size is {size}"


def input_size_for(output_size_: int, depth: int = UNET_DEPTH) -> int:
    """Input side the unpadded U-Net needs for an output side (388 → 572 at depth 4).

    Not every output size is reachable (at depth 4 they are 4, 20, 36, … = 4 mod 16); a
    size in between is rounded up to the next reachable one, whose input is returned.
    """
    _check_depth(depth)
    if output_size_ < 1:
        raise ValueError(f"output size must be >= 1, got {output_size_}")
    # A symbolic size (torch.export with dynamic height and width) stays symbolic: int()
    # would fix the exported graph to the example's size.
    size = output_size_ if isinstance(output_size_, torch.SymInt) else int(output_size_)
    for _ in range(depth):
        # ceil((size + 4) / 2): the smallest map that upsamples to cover it. Written without
        # flooring a negative number, which ONNX's integer Div (it truncates) gets wrong.
        size = (size + 5) // 2
    size += 4
    for _ in range(depth):
        size = 2 * size + 4
    return size


def valid_output_size(at_least: int, depth: int = UNET_DEPTH) -> int:
    """The smallest output side of the unpadded U-Net that is >= ``at_least``."""
    return output_size(input_size_for(at_least, depth), depth)


class DoubleConv(nn.Sequential):
    """Two 3×3 convolutions, each followed by (batch norm and) ReLU."""

    def __init__(self, in_chs: int, out_chs: int, *, padding: bool, batch_norm: bool) -> None:
        pad = 1 if padding else 0
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        for i, c_in in enumerate((in_chs, out_chs), start=1):
            layers[f"conv{i}"] = nn.Conv2d(c_in, out_chs, 3, padding=pad, bias=not batch_norm)
            if batch_norm:
                layers[f"bn{i}"] = nn.BatchNorm2d(out_chs)
            layers[f"relu{i}"] = nn.ReLU(inplace=True)
        super().__init__(layers)


class UNetEncoder(nn.Module):
    """The contracting path; returns the feature map of every level (before pooling)."""

    def __init__(self, in_chans: int, base_chs: int, depth: int, *, padding: bool, batch_norm: bool) -> None:
        super().__init__()
        self.in_chans = in_chans
        chs = [base_chs * 2**i for i in range(depth + 1)]
        self.stages = nn.ModuleList(
            DoubleConv(c_in, c_out, padding=padding, batch_norm=batch_norm)
            for c_in, c_out in zip([in_chans, *chs[:-1]], chs, strict=True)
        )
        self.pool = nn.MaxPool2d(2, 2)
        self.output_stride = 2**depth
        self.aux_module = None
        self.feature_info = FeatureInfo(FeatureSpec(c, 2**i, f"stages.{i}") for i, c in enumerate(chs))

    def set_output_stride(self, output_stride: int, multi_grid: Sequence[int] | None = None) -> None:
        if output_stride != self.output_stride or multi_grid is not None:
            raise ValueError(f"U-Net's stride is fixed by its depth ({self.output_stride}); it has no atrous mode")

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for i, stage in enumerate(self.stages):
            x = stage(x if i == 0 else self.pool(x))
            features.append(x)
        return features


class UpConv(nn.Module):
    """2× upsampling that halves the channels: the paper's 2×2 up-convolution, or
    interpolation followed by a 1×1 convolution."""

    def __init__(self, in_chs: int, *, mode: str) -> None:
        super().__init__()
        if mode == "transposed":
            self.up = nn.ConvTranspose2d(in_chs, in_chs // 2, 2, stride=2)
            self.proj = None
        else:
            self.up = Upsample(in_chs, 2, mode=mode)  # type: ignore[arg-type]
            self.proj = nn.Conv2d(in_chs, in_chs // 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        return x if self.proj is None else self.proj(x)


class UNetDecoder(nn.Module):
    """The expansive path and the 1×1 classifier, called with every encoder level."""

    def __init__(
        self, base_chs: int, depth: int, num_classes: int, *, padding: bool, batch_norm: bool, upsample: str
    ) -> None:
        super().__init__()
        chs = [base_chs * 2**i for i in range(depth + 1)]
        self.ups = nn.ModuleList(UpConv(c, mode=upsample) for c in reversed(chs[1:]))
        self.convs = nn.ModuleList(
            DoubleConv(c, c // 2, padding=padding, batch_norm=batch_norm) for c in reversed(chs[1:])
        )
        self.classify = nn.Conv2d(base_chs, num_classes, 1)

    def forward(self, *features: torch.Tensor) -> torch.Tensor:
        x = features[-1]
        for i, (up, conv) in enumerate(zip(self.ups, self.convs, strict=True)):
            x = up(x)
            skip = center_crop(
                features[-2 - i], x.shape[-2:]
            )  # "cropping is necessary due to the loss of border pixels"
            x = conv(torch.cat([skip, x], dim=1))
        return self.classify(x)

    def init_weights(self) -> None:
        init_unet_weights(self)


def center_crop(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    h, w = x.shape[-2:]
    top, left = (h - size[0]) // 2, (w - size[1]) // 2
    return x[..., top : top + size[0], left : left + size[1]]


def init_unet_weights(module: nn.Module) -> None:
    """§3: weights from N(0, 2/N), N = incoming nodes of one output; zero biases.

    For a convolution N = k·k·C_in (He's fan-in). For the 2×2, stride-2 up-convolution each
    output pixel is touched by one kernel tap per input channel, so N = C_in.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
        elif isinstance(m, nn.ConvTranspose2d):
            taps = m.kernel_size[0] * m.kernel_size[1] // (m.stride[0] * m.stride[1])
            nn.init.normal_(m.weight, std=math.sqrt(2.0 / (m.in_channels * taps)))
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
            continue
        else:
            continue
        if m.bias is not None:
            nn.init.zeros_(m.bias)


class UNet(SegmentationModel):
    """U-Net whose ``forward`` returns logits at the input's size for any input size.

    See the module docstring for the two variants. ``forward_valid`` runs the bare
    network; ``output_size`` / ``input_size_for`` give its size arithmetic.
    """

    def __init__(self, encoder: UNetEncoder, decoder: UNetDecoder, *, padding: bool) -> None:
        super().__init__(
            encoder,
            decoder,
            num_classes=decoder.classify.out_channels,
            classifier_indices=range(len(encoder.feature_info)),
            fixed_output_stride="U-Net's resolution is set by its depth; it has no atrous mode",
            logits_stride=1,
        )
        self.padding = padding
        self.depth = len(encoder.feature_info) - 1
        # Set by the trainer for the unpadded net: in training mode ``forward`` returns the
        # bare network's (smaller) output, and the loss takes the mask's centre (§2).
        self.valid_output_in_training = False

    def output_size(self, input_size: int) -> int:
        return input_size if self.padding else output_size(input_size, self.depth)

    def input_size_for(self, output_size_: int) -> int:
        if self.padding:
            multiple = 2**self.depth
            return (output_size_ + multiple - 1) // multiple * multiple  # ceil, without flooring negatives
        return input_size_for(output_size_, self.depth)

    @property
    def context(self) -> int:
        """Pixels of context the network consumes on each side (92 for the paper's net)."""
        return 0 if self.padding else (input_size_for(4, self.depth) - 4) // 2

    def forward_valid(self, x: torch.Tensor) -> torch.Tensor:
        """The network alone: (B, C, S, S) → (B, classes, output_size(S), output_size(S))."""
        return self.classifier(*self.backbone(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.backbone.in_chans)
        if self.training and self.valid_output_in_training and not self.padding:
            return self.forward_valid(x)
        h, w = x.shape[-2:]
        if self.padding:
            pad_h, pad_w = self.input_size_for(h) - h, self.input_size_for(w) - w
            top = left = 0
        else:
            # Overlap-tile on one tile: `context` mirrored pixels before the image, and
            # after it whatever the next valid size needs.
            top = left = self.context
            pad_h = input_size_for(h, self.depth) - h
            pad_w = input_size_for(w, self.depth) - w
        x = mirror_pad(x, top, pad_h - top, left, pad_w - left)
        return crop(self.forward_valid(x), h, w)


@records_config
def _create_unet(
    padding: bool,
    /,
    *,
    num_classes: int = 2,
    in_chans: int = 3,
    base_chs: int = 64,
    depth: int = UNET_DEPTH,
    batch_norm: bool,
    upsample: str = "transposed",
    output_stride: int | None = None,
    multi_grid: Sequence[int] | None = None,
    aux: bool = False,
    pretrained_backbone: str | None = None,
) -> UNet:
    check_num_classes(num_classes)
    check_upsample_mode(upsample)
    _check_depth(depth)
    if isinstance(base_chs, bool) or not isinstance(base_chs, int) or base_chs < 2 or base_chs % 2:
        raise ValueError(f"base_chs must be an even integer >= 2, got {base_chs!r}")
    if output_stride is not None and output_stride != 2**depth:
        raise ValueError(f"output_stride: U-Net of depth {depth} has stride {2**depth}, got {output_stride}")
    if multi_grid is not None:
        raise ValueError("multi_grid applies to ResNet backbones only; U-Net has none")
    if aux:
        raise ValueError("aux: U-Net has no auxiliary head")
    if pretrained_backbone is not None:
        raise ValueError(
            "pretrained_backbone: U-Net's encoder has no pretrained weights (the paper trains from scratch)"
        )
    encoder = UNetEncoder(in_chans, base_chs, depth, padding=padding, batch_norm=batch_norm)
    init_unet_weights(encoder)
    decoder = UNetDecoder(base_chs, depth, num_classes, padding=padding, batch_norm=batch_norm, upsample=upsample)
    return UNet(encoder, decoder, padding=padding)


@register_model
def unet(**kwargs) -> UNet:
    """U-Net as in the paper (§2, Fig. 1): unpadded convolutions, 2×2 up-convolutions,
    crop-and-concatenate, 572 → 388; ``model(x)`` mirror-pads (overlap-tile) to the input size."""
    kwargs.setdefault("batch_norm", False)  # the paper's network has none
    return _create_unet(False, **kwargs)  # False: unpadded


@register_model
def unet_padded(**kwargs) -> UNet:
    """U-Net with 'same' convolutions and batch norm: output the input's size."""
    kwargs.setdefault("batch_norm", True)
    return _create_unet(True, **kwargs)  # True: 'same' padding
