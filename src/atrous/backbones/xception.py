"""Aligned Xception-65 with output stride 8, 16 or 32 (DeepLab v3+, §3.2 and Fig. 4).

DeepLab v3+ §3.2 adapts the Xception of Chollet (2017), as "aligned Xception" had done
for object detection, and Fig. 4 draws the result:

* **Entry flow**: a two-convolution stem (3×3/2 to 32 channels, 3×3 to 64) and three
  residual blocks (128, 256, 728 channels), each ending in a stride-2 convolution.
* **Middle flow**: the same 728-channel residual block repeated 16 times ("more layers",
  the paper's first change; the original Xception has 8), all at one resolution.
* **Exit flow**: a residual block (728, 1024, 1024) with a stride-2 end, then a block
  without a shortcut (1536, 1536, 2048).

Every block is three 3×3 depthwise-separable convolutions. The paper's second change is
that "all max pooling operations are replaced by depthwise separable convolution with
striding": the downsampling is the third separable convolution of a block (with a 1×1
stride-2 convolution on the shortcut), not a pooling layer. That is what makes output
stride a free choice: a stride can be traded for a dilation (atrous separable
convolution, §3.1), which a max pooling cannot. The third change is batch normalisation
after each 3×3 depthwise convolution (MobileNet style).

Where the activations are. §3.2 says "batch normalization and ReLU activation are added
after each 3×3 depthwise convolution". The released DeepLab model (TF-slim
``xception_65``), and timm's ``xception65`` port of its weights, do it differently, and
this module follows the weights by default (``act_after_depthwise=True`` gives the
text's form, with the same parameters): every depthwise and pointwise convolution is followed by
batch norm, but in the residual blocks the ReLU comes *before* each separable convolution
(``act1``/``act2``/``act3``, Xception's pre-activation layout) with no activation inside
it; only the last exit-flow block (which has no shortcut) puts ReLU after its depthwise
and pointwise convolutions. Batch norm uses TF's ``eps=1e-3``, as the weights do.

Names and weights. Module and parameter names are timm's ``xception65``
(``stem.0.conv``, ``blocks.1.shortcut.bn``, ``blocks.7.stack.conv2.conv_dw`` …), so its
state dict loads with every key matched; only the ImageNet classifier ``head.fc`` is
dropped. Nothing here imports timm.

Padding. Stride-2 convolutions pad symmetrically (1 pixel on each side for a 3×3), like
timm's default and like TF DeepLab's explicit ``fixed_padding`` (it does not use TF's
asymmetric ``SAME`` for strided convolutions). A map of size ``n`` therefore goes to
``ceil(n / 2)`` at each stride-2 step, and a feature of reduction ``r`` has size
``ceil(H / r)`` × ``ceil(W / r)`` for any input size, e.g. 513 → 257 → 129 → 65 → 33.

Output stride. :meth:`XceptionAligned65.set_output_stride` walks the five strided
blocks and, once the running stride would exceed the requested output stride, keeps the
block at stride 1 and doubles the dilation for the blocks *after* it; the block whose
stride is dropped keeps the previous rate (TF-slim's and timm's rule, so the same weights
give the same features as those implementations). Construction and the evaluation-time
switch (train at 16, evaluate at 8, DeepLab v3 §4.3) run the same code.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import torch
from torch import nn

from ..layers.conv_norm_act import same_conv, set_conv_dilation
from ..layers.separable import SeparableConvNormAct
from .base import OUTPUT_STRIDES, Backbone
from .features import FeatureSpec

__all__ = ["OUTPUT_STRIDES", "XceptionAligned65", "XceptionBlock", "create_xception65"]

# TF's batch-norm epsilon: the DeepLab / timm weights were trained with it, and with
# PyTorch's 1e-5 the features would be off wherever a channel's variance is small.
_BatchNorm = partial(nn.BatchNorm2d, eps=1e-3)


class _ConvBnAct(nn.Module):
    """Conv → BN → optional ReLU with timm's ``ConvNormAct`` names (``conv``, ``bn``).

    :class:`atrous.layers.ConvNormAct` is a ``Sequential`` (``0.weight``, torchvision's
    layout); timm's stem and shortcut keys are ``conv.weight`` / ``bn.weight``.
    """

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int, *, stride: int = 1, act: bool = True) -> None:
        super().__init__()
        self.conv = same_conv(in_chs, out_chs, kernel_size, stride=stride)
        self.bn = _BatchNorm(out_chs)
        self.act = nn.ReLU(inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class XceptionBlock(nn.Module):
    """Three separable 3×3 convolutions, the last one carrying the block's stride.

    With ``start_with_relu`` (every block but the last) the stack is
    ``act1 conv1 act2 conv2 act3 conv3``: ReLU before each separable convolution and none
    inside it. Otherwise it is ``conv1 conv2 conv3`` with ReLU after each depthwise and
    pointwise convolution. A 1×1 convolution + BN shortcut is used where the channels or
    the resolution change; ``skip=False`` drops the residual connection altogether.

    The input to ``conv3`` (``stack.act3``'s output) is at the block's *input*
    resolution; it is the "tap" a decoder reads from a strided block (DeepLab v3+ takes
    its stride-4 low-level feature there, before the entry flow's second downsampling).
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: Sequence[int],
        stride: int = 1,
        *,
        start_with_relu: bool = True,
        skip: bool = True,
        act_after_depthwise: bool = False,
    ) -> None:
        super().__init__()
        out_chs = tuple(out_chs)
        self.stride = stride  # the nominal stride; set_stride_dilation may run it at 1
        self.out_channels = out_chs[-1]
        self.skip = skip
        needs_projection = skip and (out_chs[-1] != in_chs or stride != 1)
        self.shortcut = _ConvBnAct(in_chs, out_chs[-1], 1, stride=stride, act=False) if needs_projection else None
        # In pre-activation blocks the ReLUs sit between the separable convolutions, so
        # the separable convolutions themselves end in BN (act = Identity).
        inner_act = nn.Identity if start_with_relu else nn.ReLU
        self.stack = nn.Sequential()
        chs = in_chs
        for i, out in enumerate(out_chs, start=1):
            if start_with_relu:
                # act1 must not be in place: its input is also the residual branch's.
                self.stack.add_module(f"act{i}", nn.ReLU(inplace=i > 1))
            self.stack.add_module(
                f"conv{i}",
                SeparableConvNormAct(
                    chs,
                    out,
                    3,
                    stride=stride if i == len(out_chs) else 1,
                    norm_layer=_BatchNorm,
                    act_layer=inner_act,
                    act_dw_layer=nn.ReLU if act_after_depthwise else inner_act,
                ),
            )
            chs = out

    def separables(self) -> list[SeparableConvNormAct]:
        return [m for m in self.stack if isinstance(m, SeparableConvNormAct)]

    def set_stride_dilation(self, stride: int, dilation: int) -> None:
        """Run the block at ``stride`` (1 or its nominal stride) with every 3×3 at ``dilation``."""
        *first, last = self.separables()
        for sep in first:
            sep.set_dilation(dilation)
        set_conv_dilation(last.conv_dw, dilation, stride)
        if self.shortcut is not None:
            self.shortcut.conv.stride = (stride, stride)

    def forward_with_tap(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The block's output and the input to its last separable convolution."""
        *first, last = self.stack
        tap = x
        for module in first:
            tap = module(tap)
        out = last(tap)
        if self.skip:
            out = out + (x if self.shortcut is None else self.shortcut(x))
        return out, tap

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_tap(x)[0]


# (in_chs, out_chs per separable conv, nominal stride), Fig. 4 / timm's xception65.
_ENTRY = [(64, (128,) * 3, 2), (128, (256,) * 3, 2), (256, (728,) * 3, 2)]
_MIDDLE = [(728, (728,) * 3, 1)] * 16
_EXIT_STRIDED = (728, (728, 1024, 1024), 2)
_EXIT_FINAL = (1024, (1536, 1536, 2048), 1)
_MIDDLE_END = len(_ENTRY) + len(_MIDDLE) - 1  # index of the last middle-flow block (18)

# The published features after the stem: (block index, "tap" or "output"). The taps are
# inside the entry flow's second and third blocks, at the input to their strided conv3:
# timm's stride-4 and stride-8 features, and the stride-4 one is DeepLab v3+'s decoder
# input (TF DeepLab reads entry_flow/block2's second separable conv). Block 18 is the end
# of the middle flow (728 channels, stride 16 at most), block 20 the exit flow's output.
_FEATURE_POINTS = ((1, "tap"), (2, "tap"), (_MIDDLE_END, "output"), (_MIDDLE_END + 2, "output"))


class XceptionAligned65(Backbone):
    """DeepLab v3+'s modified aligned Xception-65 as a feature extractor.

    ``forward(x)`` returns a list of five tensors described by :attr:`feature_info`, at
    output stride 32 (reductions are capped at the output stride otherwise):

    * ``stem`` — 64 channels, stride 2: the two-convolution stem.
    * ``blocks.1.stack.act3`` — 256 channels, stride 4: inside the entry flow's second
      block, the input to its strided ``conv3``; DeepLab v3+'s low-level feature.
    * ``blocks.2.stack.act3`` — 728 channels, stride 8: the same tap in the third block.
    * ``blocks.18`` — 728 channels, stride 16: the end of the middle flow
      (:attr:`aux_module`, for an auxiliary FCN head).
    * ``blocks.20`` — 2048 channels, stride 32: the exit flow's output.

    Args:
        act_after_depthwise: §3.2's text form (see :func:`create_xception65`).
        **common: ``output_stride`` and ``in_chans``, as
            :class:`~atrous.backbones.base.Backbone` takes them (no multi-grid).
    """

    aux_module = f"blocks.{_MIDDLE_END}"
    # Weights are timm's xception65 state dict; its ImageNet classifier is head.fc (fc. in older timm).
    classifier_prefixes = ("head.", "fc.")
    weights_hint = "Expected the state dict of timm's 'xception65' (aligned Xception-65)."

    def __init__(self, *, act_after_depthwise: bool = False, **common: Any) -> None:
        self.act_after_depthwise = act_after_depthwise  # read by build() while Backbone.__init__ runs
        super().__init__(**common)

    def build(self, in_chans: int) -> None:
        self.stem = nn.Sequential(
            _ConvBnAct(in_chans, 32, 3, stride=2),
            _ConvBnAct(32, 64, 3),
        )
        configs = [*_ENTRY, *_MIDDLE, _EXIT_STRIDED]
        blocks = [
            XceptionBlock(in_chs, out_chs, stride, act_after_depthwise=self.act_after_depthwise)
            for in_chs, out_chs, stride in configs
        ]
        blocks.append(XceptionBlock(*_EXIT_FINAL, start_with_relu=False, skip=False))
        self.blocks = nn.Sequential(*blocks)
        self._taps = {i for i, kind in _FEATURE_POINTS if kind == "tap"}
        self._outputs = {i for i, kind in _FEATURE_POINTS if kind == "output"}

    def _set_strides(self, output_stride: int, multi_grid: tuple[int, ...] | None) -> list[FeatureSpec]:
        """Every block's stride and dilation (the module docstring's rule)."""
        current_stride, dilation = 2, 1  # after the stem's stride-2 convolution
        stride_in, stride_out = [], []
        for block in self.blocks:
            stride_in.append(current_stride)
            stride = block.stride
            if current_stride * stride > output_stride:
                # Drop the stride; this block keeps the current rate and every block after
                # it sees a map twice as dense, so their rate doubles (§3.1, TF-slim / timm).
                block.set_stride_dilation(1, dilation)
                dilation *= stride
            else:
                block.set_stride_dilation(stride, dilation)
                current_stride *= stride
            stride_out.append(current_stride)
        specs = [FeatureSpec(64, 2, "stem")]
        for i, kind in _FEATURE_POINTS:
            block = self.blocks[i]
            if kind == "tap":
                specs.append(
                    FeatureSpec(block.separables()[-1].conv_dw.in_channels, stride_in[i], f"blocks.{i}.stack.act3")
                )
            else:
                specs.append(FeatureSpec(block.out_channels, stride_out[i], f"blocks.{i}"))
        return specs

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        features = [x]
        for i, block in enumerate(self.blocks):
            if i in self._taps:
                x, tap = block.forward_with_tap(x)
                features.append(tap)
            else:
                x = block(x)
            if i in self._outputs:
                features.append(x)
        return features


def create_xception65(*, pretrained: str | None = None, **kwargs: Any) -> XceptionAligned65:
    """Build aligned Xception-65 with :class:`XceptionAligned65`'s keywords (``output_stride``,
    ``in_chans``, ``act_after_depthwise``); ``pretrained`` is a file or URL holding timm
    ``xception65`` weights.

    ``act_after_depthwise=True`` adds a ReLU after every depthwise convolution's batch norm,
    as §3.2's text describes; the parameters are the same, so timm's weights still load,
    but they were trained without it (the default, which reproduces timm's features).
    """
    return XceptionAligned65(**kwargs).with_weights(pretrained)
