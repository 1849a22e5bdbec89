"""Instance predictions on real images: masks above a score, one colour per instance, COCO JSON.

``InstancePredictor(model)(image)`` takes what :class:`~atrous.inference.Predictor` takes
(a path, PIL image, array or tensor; RGBA and grayscale converted), runs a Mask R-CNN in
evaluation mode — it resizes and normalises the image itself and returns boxes in the
image's pixels — and keeps the instances scoring at least ``score_threshold``, their
soft masks binarised at ``mask_threshold`` (0.5, as Mask R-CNN §3 does at inference).
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np
import torch
from pycocotools import mask as mask_utils
from torch import nn

from ..models import task_of
from .predictor import ImageLike, as_rgb_uint8


def instance_colours(count: int) -> np.ndarray:
    """``count`` distinct RGB colours (uint8), hues spaced by the golden ratio."""
    hues = (np.arange(count) * 0.618033988749895) % 1.0
    return np.array([[round(255 * c) for c in colorsys.hsv_to_rgb(h, 0.85, 0.95)] for h in hues], dtype=np.uint8)


@dataclass
class InstancePrediction:
    image: np.ndarray  # (H, W, 3) uint8
    boxes: np.ndarray  # (N, 4) float32 x1, y1, x2, y2 in pixels
    labels: np.ndarray  # (N,) int64, 1..C
    scores: np.ndarray  # (N,) float32, highest first
    masks: np.ndarray  # (N, H, W) bool

    def __len__(self) -> int:
        return len(self.scores)

    def instance_map(self) -> np.ndarray:
        """(H, W) int32: 0 background, i + 1 where instance ``i`` is; higher scores on top."""
        index = np.zeros(self.image.shape[:2], dtype=np.int32)
        for i in reversed(range(len(self))):  # paint the best last, so it wins overlaps
            index[self.masks[i]] = i + 1
        return index

    def overlay(self, alpha: float = 0.5) -> np.ndarray:
        """The image with each instance in its own colour and its outline drawn opaque."""
        out = self.image.astype(np.float32)
        index = self.instance_map()
        colours = instance_colours(len(self)).astype(np.float32)
        inside = index > 0
        out[inside] = (1 - alpha) * out[inside] + alpha * colours[index[inside] - 1]
        edge = inside & (
            (np.roll(index, 1, 0) != index)
            | (np.roll(index, -1, 0) != index)
            | (np.roll(index, 1, 1) != index)
            | (np.roll(index, -1, 1) != index)
        )
        out[edge] = colours[index[edge] - 1]
        return out.round().clip(0, 255).astype(np.uint8)

    def to_coco(self, image_id: int, label_to_category_id: dict[int, int] | None = None) -> list[dict]:
        """COCO result records (``loadRes`` format): RLE segmentation, bbox [x, y, w, h], score."""
        records = []
        for box, label, score, mask in zip(self.boxes, self.labels, self.scores, self.masks, strict=True):
            rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
            rle["counts"] = rle["counts"].decode("ascii")
            x1, y1, x2, y2 = (float(v) for v in box)
            category = int(label) if label_to_category_id is None else int(label_to_category_id[int(label)])
            records.append(
                {
                    "image_id": int(image_id),
                    "category_id": category,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": float(score),
                    "segmentation": rle,
                }
            )
        return records


class InstancePredictor:
    """Runs an instance model on images, one at a time.

    Args:
        model: a Mask R-CNN (``task == "instance"``), e.g. from ``load_trained_model``.
        device: where to run it.
        score_threshold: keep instances scoring at least this.
        mask_threshold: binarise the soft masks at this probability.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        device: str | torch.device = "cpu",
        score_threshold: float = 0.5,
        mask_threshold: float = 0.5,
    ) -> None:
        if task_of(model) != "instance":
            raise ValueError("InstancePredictor needs an instance-segmentation model (e.g. maskrcnn_resnet50_fpn)")
        for name, value in (("score_threshold", score_threshold), ("mask_threshold", mask_threshold)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.score_threshold = score_threshold
        self.mask_threshold = mask_threshold

    @torch.inference_mode()
    def __call__(self, image: ImageLike) -> InstancePrediction:
        rgb = as_rgb_uint8(image)
        output = self.model([rgb.to(self.device, torch.float32) / 255])[0]
        keep = output["scores"] >= self.score_threshold
        masks = output["masks"][keep, 0] > self.mask_threshold if "masks" in output else None
        height, width = rgb.shape[1:]
        return InstancePrediction(
            image=rgb.permute(1, 2, 0).numpy(),
            boxes=output["boxes"][keep].float().cpu().numpy(),
            labels=output["labels"][keep].cpu().numpy(),
            scores=output["scores"][keep].float().cpu().numpy(),
            masks=masks.cpu().numpy() if masks is not None else np.zeros((0, height, width), dtype=bool),
        )
