"""The instance-segmentation sample, in the form torchvision's Mask R-CNN takes, and its helpers.

A sample is ``(image, target)``:

- ``image``: ``float32 (3, H, W)`` in [0, 1], RGB (grayscale repeated, alpha dropped, as
  :func:`atrous.data.io.read_image` reads every image). Not normalised: Mask R-CNN's
  ``GeneralizedRCNNTransform`` normalises inside the model.
- ``target``: a dict of ``boxes`` ``float32 (N, 4)``, ``labels`` ``int64 (N,)`` in ``1..C``
  (0 is the background, never an instance), ``masks`` ``uint8 (N, H, W)`` in {0, 1},
  ``image_id`` (an ``int``), ``area`` ``float32 (N,)`` and ``iscrowd`` ``int64 (N,)``. An image
  without instances has ``boxes (0, 4)`` and ``masks (0, H, W)``.

Boxes always come from the masks (:func:`masks_to_boxes`), never from an annotation's own
box: the mask is what the model learns, so its box must enclose exactly the mask, and a
box that disagrees with its mask (a stale COCO ``bbox``, a polygon running off the image)
cannot arise. Boxes are ``x1, y1, x2, y2`` in pixels with **exclusive** ``x2, y2``: a mask
covering columns 3..5 has ``x1 = 3, x2 = 6``. That is pycocotools' convention
(``mask.toBbox`` gives ``[x, y, w, h]`` with ``w = x_max − x_min + 1``, so ``x2 = x + w``) and
Detectron2's; it treats pixels as unit squares, which is what RoIAlign samples, and makes a
horizontal flip exact (``x1' = W − x2``). torchvision's ``ops.masks_to_boxes`` returns the
inclusive ``x_max`` instead, one pixel less. ``area`` is the mask's pixel count (COCO's
``area`` field of a polygon is the polygon's area, a slightly different number).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

Target = dict[str, Any]
InstanceTransforms = Callable[[torch.Tensor, Target], tuple[torch.Tensor, Target]]


class SkippedInstanceWarning(UserWarning):
    """An instance left out of a sample (an empty mask, a box outside the image); the message names it."""


def rle_areas(rles: list[dict]) -> list[int]:
    """Pixel counts of pycocotools RLE masks. One call per mask: pycocotools 2.0.11's ``area``
    on a list sizes its result array in uint8 and fails from 256 masks on (an image of
    nuclei has 329)."""
    from pycocotools import mask as mask_utils

    return [int(mask_utils.area(rle)) for rle in rles]


def image_to_float(image: torch.Tensor) -> torch.Tensor:
    """``uint8 (3, H, W)`` → ``float32 (3, H, W)`` in [0, 1]."""
    return image.to(torch.float32).div_(255.0)


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """``float32 (N, 4)`` boxes ``x1, y1, x2, y2`` (exclusive ``x2, y2``) enclosing ``masks (N, H, W)``.

    Nonzero is the instance. An empty mask gets the box ``(0, 0, 0, 0)``; datasets and
    transforms drop empty masks before they get here.
    """
    if masks.ndim != 3:
        raise ValueError(f"masks must be (N, H, W); got shape {tuple(masks.shape)}")
    n, height, width = masks.shape
    if n == 0:
        return torch.zeros((0, 4), dtype=torch.float32)
    if masks.dtype == torch.bool:
        masks = masks.view(torch.uint8)
    # Reduce the (N, H, W) stack once per axis with amax (no full-size temporary), then
    # work on the small (N, W) and (N, H) profiles.
    columns = masks.amax(dim=1) != 0  # (N, W): which columns hold mask pixels
    rows = masks.amax(dim=2) != 0  # (N, H)
    # argmax of a 0/1 row finds its first 1; on the reversed row, its last.
    x1 = columns.to(torch.uint8).argmax(dim=1)
    x2 = width - columns.flip(1).to(torch.uint8).argmax(dim=1)
    y1 = rows.to(torch.uint8).argmax(dim=1)
    y2 = height - rows.flip(1).to(torch.uint8).argmax(dim=1)
    boxes = torch.stack([x1, y1, x2, y2], dim=1).to(torch.float32)
    boxes[~columns.any(dim=1)] = 0.0
    return boxes


def mask_areas(masks: torch.Tensor) -> torch.Tensor:
    """``float32 (N,)``: the nonzero pixels of each of ``masks (N, H, W)``."""
    if masks.device.type != "cpu":
        return (masks != 0).flatten(1).sum(dim=1).to(torch.float32)
    # NumPy's per-mask count is several times faster than a torch reduction over the stack.
    array = masks.numpy()
    return torch.tensor([np.count_nonzero(mask) for mask in array], dtype=torch.float32).reshape(-1)


def make_target(
    masks: torch.Tensor | np.ndarray,
    labels: Sequence[int] | torch.Tensor,
    *,
    image_id: int,
    iscrowd: Sequence[int] | torch.Tensor | None = None,
) -> Target:
    """A target from instance masks ``(N, H, W)``: ``bool``, ``uint8`` 0/1, or any other
    dtype where nonzero is the instance (converted to 0/1).

    Boxes and areas are computed from the masks; ``iscrowd`` defaults to zeros. The caller
    has already dropped empty masks.
    """
    masks = torch.as_tensor(masks)
    if masks.ndim != 3:
        raise ValueError(f"masks must be (N, H, W); got shape {tuple(masks.shape)}")
    if masks.dtype == torch.bool:
        masks = masks.view(torch.uint8)  # no copy
    elif masks.dtype != torch.uint8:
        masks = (masks != 0).to(torch.uint8)
    n = masks.shape[0]
    labels = torch.as_tensor(labels, dtype=torch.int64).reshape(-1)
    iscrowd = torch.zeros(n, dtype=torch.int64) if iscrowd is None else torch.as_tensor(iscrowd, dtype=torch.int64)
    if labels.numel() != n or iscrowd.numel() != n:
        raise ValueError(f"{n} masks but {labels.numel()} labels and {iscrowd.numel()} iscrowd flags")
    return {
        "boxes": masks_to_boxes(masks),
        "labels": labels,
        "masks": masks,
        "image_id": int(image_id),
        "area": mask_areas(masks),
        "iscrowd": iscrowd.reshape(-1),
    }


def empty_target(height: int, width: int, *, image_id: int) -> Target:
    """The target of an image without instances: ``boxes (0, 4)``, ``masks (0, H, W)``."""
    return make_target(torch.zeros((0, height, width), dtype=torch.uint8), [], image_id=image_id)


def instance_sample(
    image: torch.Tensor,
    masks: Sequence[np.ndarray],
    labels: Sequence[int],
    *,
    image_id: int,
    iscrowd: Sequence[int] | None = None,
) -> tuple[torch.Tensor, Target]:
    """A dataset's sample: ``image`` (``uint8 (3, H, W)``) as float, and the target of the
    instance ``masks`` it kept (``(H, W)`` each; none gives :func:`empty_target`)."""
    if not masks:
        return image_to_float(image), empty_target(int(image.shape[1]), int(image.shape[2]), image_id=image_id)
    return image_to_float(image), make_target(np.stack(masks), labels, image_id=image_id, iscrowd=iscrowd)


def collate_instances(batch: Sequence[tuple[torch.Tensor, Target]]) -> tuple[list[torch.Tensor], list[Target]]:
    """``[(image, target), …]`` → ``([image, …], [target, …])``, the lists Mask R-CNN takes.

    Images keep their own sizes (the model batches them itself), so nothing is stacked.
    """
    images = [image for image, _ in batch]
    targets = [target for _, target in batch]
    return images, targets


class InstanceDataset(Dataset):
    """What the instance datasets share: ``load(i)`` gives the decoded, checked ``(image, target)``
    and ``__getitem__`` applies ``self.transforms`` to it.

    ``class_names[0]`` is ``"background"``; ``num_classes`` counts it, as torchvision's
    ``maskrcnn_resnet50_fpn(num_classes=...)`` does.
    """

    class_names: list[str]
    transforms: InstanceTransforms | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def load(self, index: int) -> tuple[torch.Tensor, Target]:
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Target]:
        image, target = self.load(index)
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target
