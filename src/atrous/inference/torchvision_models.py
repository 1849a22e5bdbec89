"""torchvision's pretrained segmentation models, by name, as atrous models.

``load_torchvision_model("torchvision:deeplabv3_resnet101")`` builds the matching atrous
model (21 PASCAL VOC classes, output stride 8 as torchvision dilates its ResNets, the
auxiliary FCN head that the checkpoints hold) and loads torchvision's
``COCO_WITH_VOC_LABELS_V1`` weights (trained on a COCO subset with the 20 VOC
categories) into it, every key checked. atrous keeps torchvision's module names, so the
file loads as it is and the outputs are torchvision's.

The file is read from torch.hub's cache, ``$TORCH_HOME/hub/checkpoints`` (by default
``~/.cache/torch/hub/checkpoints``), and downloaded there once when missing. On a
machine without internet access the error names the file and the folder to place it in.
"""

from __future__ import annotations

from typing import Any

from ..data.constants import IMAGENET_MEAN, IMAGENET_STD
from ..data.datasets.voc import VOC_CLASSES
from ..data.palette import voc_palette
from ..models import SegmentationModel, create_model
from ..utils.state_dict import fetch_weights, load_strict

PREFIX = "torchvision:"

# atrous model name -> torchvision weight enum member (torchvision.models.get_weight name).
TORCHVISION_MODELS: dict[str, str] = {
    "deeplabv3_resnet50": "DeepLabV3_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1",
    "deeplabv3_resnet101": "DeepLabV3_ResNet101_Weights.COCO_WITH_VOC_LABELS_V1",
    "fcn_resnet50": "FCN_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1",
    "fcn_resnet101": "FCN_ResNet101_Weights.COCO_WITH_VOC_LABELS_V1",
}


def is_torchvision_spec(spec: object) -> bool:
    """Whether ``spec`` (a string or path) reads ``torchvision:NAME``."""
    return str(spec).startswith(PREFIX)


def torchvision_weights(name: str) -> Any:
    """The torchvision weight enum member for ``name`` (``"deeplabv3_resnet101"`` or ``"torchvision:…"``).

    Looked up without downloading anything; ``.url`` is the checkpoint's address.

    Raises:
        ValueError: an unknown name; the message lists the supported ones.
    """
    from torchvision.models import get_weight

    bare = name[len(PREFIX) :] if name.startswith(PREFIX) else name
    if bare not in TORCHVISION_MODELS:
        supported = ", ".join(PREFIX + n for n in TORCHVISION_MODELS)
        raise ValueError(f"unknown torchvision model {name!r}; supported: {supported}")
    return get_weight(TORCHVISION_MODELS[bare])


def torchvision_metadata(name: str) -> dict[str, Any]:
    """What predict and portrait need to know about the model: VOC classes, colours, normalisation."""
    bare = name[len(PREFIX) :] if name.startswith(PREFIX) else name
    return {
        "source": PREFIX + bare,
        "weights": TORCHVISION_MODELS[bare],
        "dataset": "voc",
        "class_names": list(VOC_CLASSES),
        "palette": [list(c) for c in voc_palette(len(VOC_CLASSES))],
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
    }


def load_torchvision_model(spec: str) -> SegmentationModel:
    """Build an atrous model with torchvision's COCO-with-VOC-labels segmentation weights.

    Args:
        spec: ``"torchvision:NAME"`` (or a bare ``NAME``) with NAME one of
            ``deeplabv3_resnet50``, ``deeplabv3_resnet101``, ``fcn_resnet50``,
            ``fcn_resnet101``.

    Returns:
        The model in eval mode, with ``model.metadata`` holding the 21 VOC class names
        (index 15 is ``"person"``), the VOC palette and ImageNet mean/std.

    Raises:
        ValueError: an unknown name (the supported ones are listed).
        ConnectionError: the checkpoint is not in torch.hub's cache and cannot be
            downloaded; the message names the URL and the path to place the file at, such
            as ``$TORCH_HOME/hub/checkpoints/deeplabv3_resnet101_coco-586e9e4e.pth``.
    """
    weights = torchvision_weights(spec)
    bare = spec[len(PREFIX) :] if spec.startswith(PREFIX) else spec
    state_dict = fetch_weights(weights.url)  # torch.hub cache; offline error names file and place
    has_aux = any(k.startswith("aux_classifier.") for k in state_dict)
    model = create_model(bare, num_classes=len(weights.meta["categories"]), output_stride=8, aux=has_aux)
    load_strict(model, state_dict, source=f"{weights.url.rsplit('/', 1)[-1]} ({PREFIX}{bare})")
    model.metadata = torchvision_metadata(bare)
    return model.eval()
