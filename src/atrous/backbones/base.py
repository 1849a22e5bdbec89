"""The backbone contract, written once: :class:`Backbone`.

Like segmentation_models.pytorch's ``EncoderMixin`` and detectron2's ``Backbone``, one
base class says what every feature extractor publishes, so that heads and the
registry-wide tests can rely on it whatever the family:

* ``forward(x)`` returns a list of feature maps, described in order by
  :attr:`~Backbone.feature_info` (channels, reduction w.r.t. the input, producing module);
* :attr:`~Backbone.output_stride` and :meth:`~Backbone.set_output_stride`: strides past
  the output stride become dilation, in place, weights untouched (DeepLab v3 §3.1), so a
  model trained at output stride 16 can be evaluated at 8 (§4.3);
* :attr:`~Backbone.aux_module`: the module whose feature an auxiliary FCN head reads
  (PSPNet §4.2 puts its auxiliary loss after ResNet's ``layer3``);
* :attr:`~Backbone.in_chans` and :meth:`~Backbone.load_pretrained` (a file, a URL or named
  torchvision weights, loaded strict: every key of the backbone must be matched).

The constructor is a template: :meth:`Backbone.__init__` takes the arguments every family
shares (``output_stride``, ``multi_grid``, ``in_chans``), has the subclass build its
layers (:meth:`~Backbone.build`), initialises them (:meth:`~Backbone.init_weights`) and
sets the output stride, so construction and the evaluation-time switch run the same code.
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from collections.abc import Iterable, Sequence
from typing import ClassVar

import torch
from torch import nn

from ..utils.state_dict import fetch_weights, load_strict
from .features import FeatureInfo, FeatureSpec

OUTPUT_STRIDES = (8, 16, 32)


class Backbone(nn.Module, metaclass=ABCMeta):
    """A stride-aware feature extractor (see the module docstring for the contract).

    Subclasses set :attr:`aux_module` and implement :meth:`build`, :meth:`forward` and
    :meth:`_set_strides`; those with ImageNet weights set :attr:`torchvision_weights`
    and :attr:`classifier_prefixes`.

    Args:
        output_stride: 8, 16 or 32 (:data:`OUTPUT_STRIDES`).
        multi_grid: the unit rates of the last stage (DeepLab v3 §3.2); only families with
            :attr:`has_multi_grid` take them, the others refuse anything but ``None``.
        in_chans: input channels.
    """

    #: The module whose feature an auxiliary head reads (a name in ``named_modules()``).
    aux_module: str
    #: torchvision's weight enum (``"ResNet50_Weights"``): what a bare ``"IMAGENET1K_V1"`` names.
    torchvision_weights: str | None = None
    #: Keys of an ImageNet checkpoint that a segmentation backbone drops (its classifier).
    classifier_prefixes: ClassVar[tuple[str, ...]] = ()
    #: Said when a checkpoint does not match, to name the weights expected.
    weights_hint: ClassVar[str] = ""
    #: Whether :meth:`set_output_stride` takes ``multi_grid`` (ResNet's last stage only).
    has_multi_grid: ClassVar[bool] = False

    def __init__(self, *, output_stride: int = 32, multi_grid: Sequence[int] | None = None, in_chans: int = 3) -> None:
        super().__init__()
        self.in_chans = in_chans
        self.build(in_chans)
        self.init_weights()
        self.output_stride = 32
        self.feature_info = FeatureInfo()
        self.set_output_stride(output_stride, multi_grid)

    @abstractmethod
    def build(self, in_chans: int) -> None:
        """Create the layers (at output stride 32), with the parameter names of the weights loaded."""

    @abstractmethod
    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The feature maps :attr:`feature_info` describes, in its order."""

    @abstractmethod
    def _set_strides(self, output_stride: int, multi_grid: tuple[int, ...] | None) -> Iterable[FeatureSpec]:
        """Set every layer's stride and dilation for ``output_stride`` (already checked); return the
        published features with their new reductions."""

    def init_weights(self) -> None:
        """He initialisation of the convolutions (fan-out, as torchvision's ResNet, VGG and
        MobileNetV2 do), zero biases, and normalisation layers at identity."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d | nn.GroupNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def set_output_stride(self, output_stride: int, multi_grid: Sequence[int] | None = None) -> None:
        """Set every layer's stride and dilation for ``output_stride``; weights untouched.

        Both arguments are checked before anything changes, so a refused call leaves the
        backbone as it was.
        """
        if output_stride not in OUTPUT_STRIDES:
            raise ValueError(f"output_stride must be one of {OUTPUT_STRIDES}, got {output_stride!r}")
        if multi_grid is not None and not self.has_multi_grid:
            raise ValueError(
                f"multi_grid={multi_grid!r} is not supported: {type(self).__name__} has no multi-grid units "
                f"(DeepLab v3's multi-grid rates, §3.2, are for ResNet's last block); pass multi_grid=None"
            )
        grid = None if multi_grid is None else tuple(int(r) for r in multi_grid)
        self.feature_info = FeatureInfo(self._set_strides(output_stride, grid))
        self.output_stride = output_stride

    def convert_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Rename or reshape a checkpoint's keys into this backbone's (none by default)."""
        return state_dict

    def load_pretrained(self, source: str) -> None:
        """Load ImageNet weights: a local file, a URL, or a torchvision weight name.

        Every key of the backbone must be matched; the checkpoint's classifier
        (:attr:`classifier_prefixes`) is dropped. Any other missing or unexpected key is
        an error that lists the keys.
        """
        state_dict = dict(fetch_weights(source, default_weights=self.torchvision_weights))
        load_strict(
            self,
            self.convert_state_dict(state_dict),
            source=source,
            ignore_prefixes=self.classifier_prefixes,
            hint=self.weights_hint,
        )

    def with_weights(self, source: str | None) -> Backbone:
        """``self``, after :meth:`load_pretrained` when ``source`` is given: a builder's last step."""
        if source:
            self.load_pretrained(source)
        return self
