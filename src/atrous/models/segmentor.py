"""The shared semantic-segmentation model: backbone → head → logits at input size, and
:func:`build_segmentor`, which assembles every backbone-and-head family."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch
from torch import nn

from ..backbones import OUTPUT_STRIDES, create_backbone
from ..layers.upsample import Upsample, resize
from .heads import aux_fcn_head
from .pretrained import PretrainedMixin, records_config

UPSAMPLE_MODES = ("bilinear", "nearest", "transposed")

# PSPNet §4.2: "we set the auxiliary loss weight α to 0.4" (Table 3 shows it best); every
# family with an auxiliary head uses it.
AUX_WEIGHT = 0.4

# VGG-16 as the Caffe reference nets pool it (``ceil_mode``), so that a ×stride upsampling
# of the logits lands on the input's pixels: a family's ``backbone_args``.
CAFFE_POOLING = MappingProxyType({"ceil_mode": True})


def check_num_classes(num_classes: int) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an integer >= 1, got {num_classes!r}")


def check_upsample_mode(upsample: str) -> None:
    if upsample not in UPSAMPLE_MODES:
        raise ValueError(f"upsample must be one of {', '.join(UPSAMPLE_MODES)}, got {upsample!r}")


def final_upsample(upsample: str, num_classes: int, output_stride: int) -> Upsample | None:
    """The logits' upsampling by ``output_stride``: ``None`` means bilinear to the exact
    input size (torchvision's ``F.interpolate``, kept for checkpoint equivalence); nearest
    or a learned transposed convolution (bilinear-initialised) otherwise."""
    check_upsample_mode(upsample)
    if upsample == "bilinear":
        return None
    return Upsample(num_classes, output_stride, mode=upsample)  # type: ignore[arg-type]


class SegmentationModel(PretrainedMixin, nn.Module):
    """Backbone, classifier and optional auxiliary classifier.

    ``forward(x)`` takes a float (B, C, H, W) batch and returns logits (B, classes, H, W)
    at the input's height and width, whatever they are. In training mode with an
    auxiliary head it returns ``{"out": logits, "aux": aux_logits}`` (both at H×W); the
    loss weighs ``aux`` by :attr:`aux_weight`. In evaluation the auxiliary head is
    skipped.

    The attribute names ``backbone``, ``classifier`` and ``aux_classifier`` are
    torchvision's, so torchvision segmentation checkpoints load into the matching model.

    Args:
        backbone: a feature extractor returning a list of maps described by its
            ``feature_info``.
        classifier: the head. It is called with the features at
            ``classifier_indices`` (positions in the backbone's list), in that order.
        aux_classifier: an optional training-time head on ``features[aux_index]``.
        num_classes: the classes the heads predict.
        aux_weight: the auxiliary loss weight (PSPNet §4.2 uses 0.4).
        upsample: the logits' final upsampling (an :class:`~atrous.layers.Upsample`
            called with the input size); ``None`` resizes bilinearly to the input size.
        fixed_output_stride: why this architecture cannot switch output stride (FCN's
            skips are tied to pool3/pool4), or ``None`` when it can.
        logits_stride: the stride of the head's logits when a decoder fixes it (4 for
            DeepLab v3+); ``None`` when it is the output stride.
    """

    def __init__(
        self,
        backbone: nn.Module,
        classifier: nn.Module,
        *,
        classifier_indices: Sequence[int] = (-1,),
        num_classes: int,
        aux_classifier: nn.Module | None = None,
        aux_index: int = -2,
        aux_weight: float = AUX_WEIGHT,
        upsample: Upsample | None = None,
        fixed_output_stride: str | None = None,
        logits_stride: int | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.classifier = classifier
        self.aux_classifier = aux_classifier
        self.upsample = upsample
        self.classifier_indices = tuple(classifier_indices)
        self.aux_index = aux_index
        self.aux_weight = aux_weight
        self.fixed_output_stride = fixed_output_stride
        self.logits_stride = logits_stride
        # The build arguments (recorded by the builder, see ``records_config``) and the
        # class names, palette … (saved, never used to build): ``PretrainedMixin``.
        self.config: dict[str, Any] = {"num_classes": num_classes}
        self.metadata: dict[str, Any] = {}
        # Heads are initialised here, once, for every family (a head with its own
        # ``init_weights``, such as FCN's zero-initialised score layers, uses that); the
        # backbone keeps its own (torchvision's) initialisation or its pretrained weights.
        for head in (self.classifier, self.aux_classifier):
            if head is None:
                continue
            if hasattr(head, "init_weights"):
                head.init_weights()
            else:
                init_head_weights(head, num_classes)

    @property
    def num_classes(self) -> int:
        return int(self.config["num_classes"])

    @property
    def output_stride(self) -> int:
        return self.backbone.output_stride

    def set_output_stride(self, output_stride: int) -> None:
        """Switch output stride in place (DeepLab v3 §4.3: train at 16, evaluate at 8).

        Backbone strides become dilations (or back) and heads with atrous rates rescale
        them; no weight changes.
        """
        name = self.config.get("name", type(self).__name__)
        if self.fixed_output_stride is not None and output_stride != self.output_stride:
            raise ValueError(f"{name} cannot change its output stride: {self.fixed_output_stride}")
        follows_stride = self.upsample is not None and self.logits_stride is None
        if follows_stride and self.upsample.deconv is not None and output_stride != self.output_stride:
            raise ValueError(
                f"{name} upsamples its logits with a learned ×{self.upsample.factor} transposed convolution, "
                f"which is tied to output stride {self.output_stride}; build it with output_stride={output_stride}"
            )
        if output_stride not in OUTPUT_STRIDES:
            raise ValueError(f"output_stride must be one of {OUTPUT_STRIDES}, got {output_stride!r}")
        # Heads first: they may refuse (a learned upsampling tied to the stride) before
        # anything has changed.
        for head in (self.classifier, self.aux_classifier):
            if head is not None and hasattr(head, "set_output_stride"):
                head.set_output_stride(output_stride)
        self.backbone.set_output_stride(output_stride, self.config.get("multi_grid"))
        if follows_stride:
            self.upsample.factor = output_stride
        self.config["output_stride"] = output_stride

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        check_input(x, self.backbone.in_chans)
        size = x.shape[-2:]
        features = self.backbone(x)
        out = self.classifier(*[features[i] for i in self.classifier_indices])
        out = resize(out, size) if self.upsample is None else self.upsample(out, size)
        if self.training and self.aux_classifier is not None:
            aux = resize(self.aux_classifier(features[self.aux_index]), size)
            return {"out": out, "aux": aux}
        return out


@dataclass(frozen=True)
class Head:
    """A family's head on a built backbone, and what the model must know about it.

    Args:
        module: the head; called with the backbone's features at ``inputs``, in order.
        inputs: positions in the backbone's feature list (default: the last).
        logits_stride: the stride of the head's logits when the head fixes it (4 for
            DeepLab v3+'s decoder, 8 for FCN-8s); ``None`` when it is the output stride.
        aligned_upsample: reach the input with an :class:`~atrous.layers.Upsample` of
            exactly ×stride, cropped (the geometry of VGG's ceil-mode pooling), whatever
            ``upsample`` is; otherwise bilinear resizes to the input size as torchvision
            does (kept for checkpoint equivalence).
        learnable_upsample: with ``aligned_upsample`` and ``upsample="transposed"``,
            whether that final upsampling trains.
        fixed_output_stride: why the architecture cannot switch output stride, or ``None``.
    """

    module: nn.Module
    inputs: Sequence[int] = (-1,)
    logits_stride: int | None = None
    aligned_upsample: bool = False
    learnable_upsample: bool = True
    fixed_output_stride: str | None = None


@dataclass(frozen=True)
class Family:
    """A backbone-and-head family, as :func:`build_segmentor` assembles it.

    Args:
        head: ``head(backbone, *, num_classes, output_stride, upsample) -> Head``: the
            family's head on the built backbone.
        output_stride, aux, upsample: the family's defaults for these options.
        backbone_args: backbone arguments the architecture fixes (VGG's ceil-mode
            pooling); not options, so not recorded.
    """

    head: Callable[..., Head]
    output_stride: int = 16
    aux: bool = False
    upsample: str = "bilinear"
    backbone_args: Mapping[str, Any] = field(default_factory=dict)


def build_segmentor(
    backbone_name: str,
    family: Family,
    /,
    *,
    output_stride: int | None = None,
    aux: bool | None = None,
    upsample: str | None = None,
    **options: Any,
) -> SegmentationModel:
    """Backbone → head → auxiliary FCN head → :class:`SegmentationModel`: every
    backbone-and-head family is assembled here, its options recorded in ``model.config``.

    ``output_stride``, ``aux`` and ``upsample`` default to the family's; the other
    options (``num_classes``, ``multi_grid``, ``in_chans``, ``pretrained_backbone`` and
    the backbone's own, such as Xception's ``act_after_depthwise``) are every family's.
    """
    return _assemble(
        backbone_name,
        family,
        output_stride=family.output_stride if output_stride is None else output_stride,
        aux=family.aux if aux is None else aux,
        upsample=family.upsample if upsample is None else upsample,
        **options,
    )


@records_config
def _assemble(
    backbone_name: str,
    family: Family,
    /,
    *,
    num_classes: int = 21,
    output_stride: int,
    aux: bool,
    upsample: str,
    multi_grid: Sequence[int] | None = None,
    in_chans: int = 3,
    pretrained_backbone: str | None = None,
    **backbone_options: Any,
) -> SegmentationModel:
    check_num_classes(num_classes)
    check_upsample_mode(upsample)
    backbone = create_backbone(
        backbone_name,
        output_stride=output_stride,
        multi_grid=multi_grid,
        in_chans=in_chans,
        pretrained=pretrained_backbone,
        **family.backbone_args,
        **backbone_options,
    )
    head = family.head(backbone, num_classes=num_classes, output_stride=output_stride, upsample=upsample)
    aux_head, aux_index = aux_fcn_head(backbone, num_classes, aux)
    factor = head.logits_stride or output_stride
    if head.aligned_upsample:
        final = Upsample(num_classes, factor, mode=upsample, learnable=head.learnable_upsample)  # type: ignore[arg-type]
    else:
        final = final_upsample(upsample, num_classes, factor)
    return SegmentationModel(
        backbone,
        head.module,
        num_classes=num_classes,
        classifier_indices=head.inputs,
        aux_classifier=aux_head,
        aux_index=aux_index,
        upsample=final,
        fixed_output_stride=head.fixed_output_stride,
        logits_stride=head.logits_stride,
    )


def check_input(x: torch.Tensor, in_chans: int) -> None:
    """A clear error for input that is not a float (B, in_chans, H, W) tensor."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"model input must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(
            f"model input must be 4-D (batch, channels, height, width), got shape {tuple(x.shape)}"
            + (" — add a batch dimension with x.unsqueeze(0)" if x.ndim == 3 else "")
        )
    if not x.is_floating_point():
        raise TypeError(
            f"model input must be a floating-point tensor, got {x.dtype} — convert and normalise "
            f"images first (uint8 0..255 → float)"
        )
    if x.shape[1] != in_chans:
        raise ValueError(f"model input must have {in_chans} channels, got shape {tuple(x.shape)}")


def init_head_weights(module: nn.Module, num_classes: int) -> None:
    """Kaiming-normal convolutions and unit/zero norms, as torchvision initialises ResNet;
    the 1×1 classifier convolutions to ``num_classes`` get N(0, 0.01²) and zero bias.

    A Kaiming-initialised classifier starts with logits spread over several units (a first
    loss near 8 for 4 classes, and a spike after the first step); small classifier weights
    start every class near equal probability, as mmsegmentation initialises ``conv_seg``.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            if m.out_channels == num_classes and m.kernel_size == (1, 1):
                nn.init.normal_(m.weight, std=0.01)
            else:
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.ConvTranspose2d):
            continue  # keeps its bilinear initialisation (layers.upsample)
        elif isinstance(m, nn.BatchNorm2d | nn.GroupNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
