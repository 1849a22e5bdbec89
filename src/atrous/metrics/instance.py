"""Instance-segmentation metrics: COCO box and mask AP, computed by pycocotools' ``COCOeval``.

Nothing here reimplements the COCO evaluation; this module only converts torchvision's
detection format into COCO's and reads ``COCOeval``'s accumulated arrays. The COCO
definitions (Lin et al. 2014, "Microsoft COCO: Common Objects in Context", and the
``cocodataset.org/#detection-eval`` page), as ``COCOeval`` implements them:

* Detections of one category are ranked by score over the **whole dataset**; in each
  image they are matched greedily, highest score first, to the unmatched ground truth of
  best IoU at or above the threshold. A detection matched to a crowd region
  (``iscrowd=1``) is ignored — neither true nor false positive — as is an unmatched
  detection whose area lies outside the area range being scored.
* Precision is made monotone (each point takes the best precision at any higher
  recall) and read at the 101 recall points ``0, 0.01, …, 1`` — 0 past the highest
  recall reached; AP is the mean of those 101 values.
* ``AP`` averages over the ten IoU thresholds ``0.50:0.05:0.95`` and over the
  categories that have ground truth; ``AP50``/``AP75`` use one threshold. ``_small``,
  ``_medium``, ``_large`` keep ground truth of area < 32², 32²–96², > 96² pixels. ``ARk``
  is the recall with at most ``k`` detections per image and category, averaged over
  thresholds and categories.

IoU is between boxes for ``box_*`` and between masks for ``mask_*``: a prediction with
the right box and a wrong mask scores in the first and not in the second.

Undefined values: where no category has a (non-crowd) ground-truth instance in the
area range — e.g. a dataset with no instances at all, or ``_large`` on small objects —
``COCOeval`` reports −1; this module returns ``float('nan')`` instead. With ground truth
but no predictions at all, AP is 0.0.
"""

from __future__ import annotations

import contextlib
import io
import math
import operator
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ..data.instances.target import rle_areas

IOU_TYPES = ("bbox", "segm")
_PREFIX = {"bbox": "box", "segm": "mask"}
_AREAS = ("small", "medium", "large")


class InstanceEvaluator:
    """Dataset-level COCO box and mask AP for instance segmentation (Mask R-CNN).

    Call :meth:`update` once per image with torchvision's detection format, then
    :meth:`compute`. Masks are run-length encoded as they arrive, so memory grows with
    the number of instances, not with image size.

    Ground truth per image (a dict): ``boxes`` (N, 4) x1, y1, x2, y2 in pixels, where a
    mask spanning columns 3..5 has ``x1=3, x2=6`` (COCO's ``bbox`` is then
    ``[x1, y1, x2 − x1, y2 − y1]``); ``labels`` (N,) category ids; ``masks`` (N, H, W)
    {0, 1}; optional ``iscrowd`` (N,) and ``area`` (N,) — by default the mask area (box
    area without masks), as in COCO's annotations.

    Prediction per image (what torchvision's ``MaskRCNN`` returns in eval mode):
    ``boxes`` (M, 4) x1, y1, x2, y2; ``labels`` (M,); ``scores`` (M,); ``masks``
    (M, 1, H, W) or (M, H, W) probabilities, foreground where ``> mask_threshold`` (bool
    or integer masks: where non-zero). Boxes are needed only for ``"bbox"``, masks only
    for ``"segm"``.

    Tensors may live on any device; numpy arrays are accepted too.

    Args:
        categories: the category ids, or ``C`` for ids ``1..C`` (torchvision's labels,
            0 being background). A label outside them is an error.
        iou_types: ``"bbox"`` (box AP), ``"segm"`` (mask AP), or both.
        max_dets: detections kept per image and category, best score first (COCO: 100).
            AR is also reported at 1 and 10.
        mask_threshold: probability above which a predicted mask pixel is foreground
            (0.5, as in torchvision's reference evaluation).

    Example::

        evaluator = InstanceEvaluator(num_classes - 1)
        model.eval()
        for images, targets in loader:
            outputs = model(images)
            for output, target in zip(outputs, targets):
                evaluator.update(int(target["image_id"]), output, target)
        print(summarize(evaluator.compute()))
    """

    def __init__(
        self,
        categories: Sequence[int] | int,
        *,
        iou_types: Sequence[str] = IOU_TYPES,
        max_dets: int = 100,
        mask_threshold: float = 0.5,
    ) -> None:
        self.categories = _categories(categories)
        if isinstance(iou_types, str):
            iou_types = (iou_types,)
        iou_types = tuple(iou_types)
        if not iou_types or len(set(iou_types)) != len(iou_types) or not set(iou_types) <= set(IOU_TYPES):
            raise ValueError(f"iou_types must be distinct values from {IOU_TYPES}, got {iou_types!r}")
        self.iou_types = iou_types
        if isinstance(max_dets, bool) or not isinstance(max_dets, int) or max_dets < 1:
            raise ValueError(f"max_dets must be an integer >= 1, got {max_dets!r}")
        self.max_dets = max_dets
        if not 0.0 <= float(mask_threshold) < 1.0:
            raise ValueError(f"mask_threshold must be in [0, 1), got {mask_threshold!r}")
        self.mask_threshold = float(mask_threshold)
        self._images: dict[int, dict[str, Any]] = {}

    def __repr__(self) -> str:
        return (
            f"InstanceEvaluator(categories={len(self.categories)}, iou_types={self.iou_types}, "
            f"max_dets={self.max_dets}, images={len(self._images)})"
        )

    def __len__(self) -> int:
        """The number of images added so far."""
        return len(self._images)

    def reset(self) -> None:
        """Forget every image added so far."""
        self._images = {}

    @torch.no_grad()
    def update(
        self,
        image_id: int,
        prediction: Mapping[str, Any],
        target: Mapping[str, Any],
        *,
        image_size: tuple[int, int] | None = None,
    ) -> None:
        """Add one image's predictions and ground truth.

        Args:
            image_id: a unique integer per image (a 0-d integer tensor works too).
            prediction: ``boxes``, ``labels``, ``scores``, ``masks`` — see the class.
            target: ``boxes``, ``labels``, ``masks``, optional ``iscrowd``, ``area``.
            image_size: (H, W); needed only when neither target nor prediction has masks
                to take it from. Checked against the masks when given.

        Raises:
            ValueError: a repeated ``image_id``, a missing key, shapes that disagree, or a
                label that is not one of ``categories``.
        """
        if isinstance(image_id, bool):
            raise ValueError(f"update: image_id must be an integer, got {image_id!r}")
        try:
            image_id = operator.index(image_id)
        except TypeError:
            raise ValueError(f"update: image_id must be an integer, got {image_id!r}") from None
        if image_id in self._images:
            raise ValueError(f"update: image_id {image_id} was already added")
        segm = "segm" in self.iou_types
        bbox = "bbox" in self.iou_types

        gt_labels = _labels(target, "target", self.categories)
        n = len(gt_labels)
        gt_masks = self._masks(target, "target", n) if segm or "masks" in target else None
        dt_labels = _labels(prediction, "prediction", self.categories)
        m = len(dt_labels)
        dt_masks = self._masks(prediction, "prediction", m) if segm else None
        height, width = _image_size(image_size, gt_masks, dt_masks)

        # Ground truth: one annotation serves both IoU types, as in a COCO file.
        gt_rles = _encode(gt_masks)
        if "boxes" in target:
            gt_boxes = _xywh(_boxes(target, "target", n))
        elif gt_rles is not None:
            gt_boxes = mask_utils.toBbox(gt_rles).tolist() if n else []
        else:
            raise ValueError("update: target has neither 'boxes' nor 'masks'")
        if "area" in target:
            gt_area = _vector(target, "area", "target", n).tolist()
        elif gt_rles is not None:
            gt_area = rle_areas(gt_rles) if n else []
        else:
            gt_area = [w * h for _, _, w, h in gt_boxes]
        iscrowd = _vector(target, "iscrowd", "target", n).astype(bool).tolist() if "iscrowd" in target else [0] * n
        gts = []
        for i in range(n):
            ann = {
                "image_id": image_id,
                "category_id": gt_labels[i],
                "bbox": gt_boxes[i],
                "area": float(gt_area[i]),
                "iscrowd": int(iscrowd[i]),
            }
            if gt_rles is not None:
                ann["segmentation"] = gt_rles[i]
            gts.append(ann)

        # Predictions: one list per IoU type, as pycocotools' ``loadRes`` builds them —
        # a box result's area is its box's, a mask result's its mask's.
        scores = _vector(prediction, "scores", "prediction", m).astype(np.float64).tolist()
        dts: dict[str, list[dict[str, Any]]] = {}
        if bbox:
            dt_boxes = _xywh(_boxes(prediction, "prediction", m))
            dts["bbox"] = [
                {
                    "image_id": image_id,
                    "category_id": dt_labels[i],
                    "bbox": dt_boxes[i],
                    "score": scores[i],
                    "area": dt_boxes[i][2] * dt_boxes[i][3],
                    "iscrowd": 0,
                }
                for i in range(m)
            ]
        if segm:
            dt_rles = _encode(dt_masks)
            dt_area = rle_areas(dt_rles) if m else []
            dt_mask_boxes = mask_utils.toBbox(dt_rles).tolist() if m else []
            dts["segm"] = [
                {
                    "image_id": image_id,
                    "category_id": dt_labels[i],
                    "segmentation": dt_rles[i],
                    "bbox": dt_mask_boxes[i],
                    "score": scores[i],
                    "area": float(dt_area[i]),
                    "iscrowd": 0,
                }
                for i in range(m)
            ]
        self._images[image_id] = {"height": height, "width": width, "gts": gts, "dts": dts}

    def merge(self, other: InstanceEvaluator) -> InstanceEvaluator:
        """Add another evaluator's images (e.g. from another worker); returns self."""
        if not isinstance(other, InstanceEvaluator):
            raise TypeError(f"merge: other must be an InstanceEvaluator, got {type(other).__name__}")
        if (other.categories, other.iou_types) != (self.categories, self.iou_types):
            raise ValueError("merge: other has different categories or iou_types")
        self._merge_images(other._images)
        return self

    def all_gather(self) -> InstanceEvaluator:
        """Collect every rank's images into this evaluator, on every rank; returns self.

        A no-op unless ``torch.distributed`` is available and initialised. Call it once,
        after the last :meth:`update`; each rank must have seen different images.
        """
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered: list[Any] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(gathered, self._images)
            rank = torch.distributed.get_rank()
            for i, images in enumerate(gathered):
                if i != rank:
                    self._merge_images(images)
        return self

    def compute(self) -> dict[str, float]:
        """COCO AP and AR of the images so far; see the module docstring.

        Returns:
            For each IoU type, with prefix ``box_`` (bbox) or ``mask_`` (segm): ``AP``,
            ``AP50``, ``AP75``, ``AP_small``, ``AP_medium``, ``AP_large``, ``AR1``,
            ``AR10``, ``AR{max_dets}``, ``AR_small``, ``AR_medium``, ``AR_large`` —
            fractions in [0, 1], NaN where undefined (no ground truth).
        """
        results: dict[str, float] = {}
        for iou_type in self.iou_types:
            results.update(self._compute(iou_type))
        return results

    def _compute(self, iou_type: str) -> dict[str, float]:
        prefix = _PREFIX[iou_type]
        max_dets = sorted({1, 10, self.max_dets})
        keys = _keys(self.max_dets)
        if not self._images:
            return {f"{prefix}_{key}": math.nan for key in keys}
        images = [{"id": i, "height": v["height"], "width": v["width"]} for i, v in self._images.items()]
        categories = [{"id": c} for c in self.categories]
        # Fresh copies every time (COCOeval writes into the annotations); ids start at 1
        # because COCOeval takes a match id of 0 for "unmatched".
        gts = [dict(a) for v in self._images.values() for a in v["gts"]]
        dts = [dict(a) for v in self._images.values() for a in v["dts"][iou_type]]
        for anns in (gts, dts):
            for i, ann in enumerate(anns, start=1):
                ann["id"] = i
        with contextlib.redirect_stdout(io.StringIO()):  # COCO and COCOeval print progress
            coco_gt = _coco(images, categories, gts)
            # Built directly rather than with ``coco_gt.loadRes``, which fails on an empty list.
            coco_dt = _coco(images, categories, dts)
            evaluator = COCOeval(coco_gt, coco_dt, iouType=iou_type)
            evaluator.params.maxDets = max_dets
            evaluator.evaluate()
            evaluator.accumulate()
        params = evaluator.params
        precision = evaluator.eval["precision"]  # (T, R, K, A, M), -1 where undefined
        recall = evaluator.eval["recall"]  # (T, K, A, M)
        iou_index = {0.5: _index(params.iouThrs, 0.5), 0.75: _index(params.iouThrs, 0.75)}
        area = {label: params.areaRngLbl.index(label) for label in ("all", *_AREAS)}
        dets = {k: params.maxDets.index(k) for k in max_dets}
        top = dets[self.max_dets]

        out = {
            "AP": _mean(precision[:, :, :, area["all"], top]),
            "AP50": _mean(precision[iou_index[0.5], :, :, area["all"], top]),
            "AP75": _mean(precision[iou_index[0.75], :, :, area["all"], top]),
        }
        for label in _AREAS:
            out[f"AP_{label}"] = _mean(precision[:, :, :, area[label], top])
        for k in (1, 10, self.max_dets):
            out[f"AR{k}"] = _mean(recall[:, :, area["all"], dets[k]])
        for label in _AREAS:
            out[f"AR_{label}"] = _mean(recall[:, :, area[label], top])
        return {f"{prefix}_{key}": out[key] for key in keys}

    def _masks(self, record: Mapping[str, Any], name: str, count: int) -> np.ndarray | None:
        """Binary (count, H, W) bool masks; None when absent and ``count`` is 0."""
        if "masks" not in record:
            if count == 0:
                return None
            raise ValueError(f"update: {name} has no 'masks' (needed for iou_types 'segm')")
        masks = record["masks"]
        if not isinstance(masks, torch.Tensor):
            masks = torch.as_tensor(np.asarray(masks))
        if masks.ndim == 4 and masks.shape[1] == 1:
            masks = masks[:, 0]
        if masks.ndim != 3 or masks.shape[0] != count:
            raise ValueError(
                f"update: {name} masks must be ({count}, H, W) or ({count}, 1, H, W), got shape {tuple(masks.shape)}"
            )
        # Thresholded where the masks are, so only bits cross to the CPU.
        binary = masks > self.mask_threshold if masks.is_floating_point() else masks != 0
        return binary.cpu().numpy()

    def _merge_images(self, images: dict[int, dict[str, Any]]) -> None:
        repeated = sorted(set(images) & set(self._images))
        if repeated:
            raise ValueError(f"merge: image ids {repeated[:10]} are in both evaluators")
        self._images.update(images)


def summarize(results: Mapping[str, float]) -> str:
    """A plain-text table of :meth:`InstanceEvaluator.compute`'s results (in %).

    One row per IoU type present (``box``, ``mask``); undefined values show ``-``.
    """
    prefixes = [p for p in _PREFIX.values() if f"{p}_AP" in results]
    if not prefixes:
        raise ValueError("summarize: results has no 'box_AP' or 'mask_AP'")
    columns: list[str] = []
    for key in results:
        prefix, _, metric = key.partition("_")
        if prefix in prefixes and metric not in columns:
            columns.append(metric)
    headers = [c.replace("_small", "s").replace("_medium", "m").replace("_large", "l") for c in columns]
    width = max(len("mask"), *(len(p) for p in prefixes))
    lines = [f"{'':<{width}}" + "".join(f"  {h:>6}" for h in headers)]
    lines.append("-" * len(lines[0]))
    for prefix in prefixes:
        cells = "".join(f"  {_pct(results.get(f'{prefix}_{c}', math.nan))}" for c in columns)
        lines.append(f"{prefix:<{width}}{cells}")
    return "\n".join(lines)


def _categories(categories: Sequence[int] | int) -> tuple[int, ...]:
    if isinstance(categories, (int, np.integer)) and not isinstance(categories, bool):
        if categories < 1:
            raise ValueError(f"categories must be >= 1 when an integer, got {categories}")
        return tuple(range(1, int(categories) + 1))
    ids = tuple(categories)
    if not ids or any(isinstance(c, bool) or not isinstance(c, (int, np.integer)) for c in ids):
        raise ValueError(f"categories must be an integer or a non-empty sequence of integers, got {categories!r}")
    if len(set(ids)) != len(ids):
        raise ValueError(f"categories must be distinct, got {categories!r}")
    return tuple(int(c) for c in ids)


def _array(record: Mapping[str, Any], key: str, name: str) -> np.ndarray:
    if key not in record:
        raise ValueError(f"update: {name} has no {key!r}")
    value = record[key]
    if isinstance(value, torch.Tensor):
        value = value.detach()
        if value.dtype in (torch.bfloat16, torch.float16):
            value = value.float()
        return value.cpu().numpy()
    return np.asarray(value)


def _vector(record: Mapping[str, Any], key: str, name: str, count: int) -> np.ndarray:
    value = _array(record, key, name)
    if value.shape != (count,):
        raise ValueError(f"update: {name} {key} must have shape ({count},), got {value.shape}")
    return value


def _labels(record: Mapping[str, Any], name: str, categories: tuple[int, ...]) -> list[int]:
    labels = _array(record, "labels", name)
    if labels.ndim != 1 or not (labels.size == 0 or np.issubdtype(labels.dtype, np.integer)):
        raise ValueError(f"update: {name} labels must be integers (N,), got shape {labels.shape} and {labels.dtype}")
    bad = np.setdiff1d(labels, categories)
    if bad.size:
        raise ValueError(f"update: {name} has labels {bad[:10].tolist()} that are not categories")
    return [int(x) for x in labels]


def _boxes(record: Mapping[str, Any], name: str, count: int) -> np.ndarray:
    boxes = _array(record, "boxes", name)
    if boxes.shape != (count, 4):
        raise ValueError(f"update: {name} boxes must have shape ({count}, 4), got {boxes.shape}")
    return boxes.astype(np.float64)


def _xywh(boxes: np.ndarray) -> list[list[float]]:
    """x1, y1, x2, y2 → COCO's x, y, width, height."""
    out = boxes.copy()
    out[:, 2:] -= out[:, :2]
    return out.tolist()


def _encode(masks: np.ndarray | None) -> list[dict[str, Any]] | None:
    """(N, H, W) bool → N compressed RLEs (pycocotools wants (H, W, N) uint8 in Fortran order)."""
    if masks is None:
        return None
    if masks.shape[0] == 0:
        return []
    return mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))


def _image_size(
    image_size: tuple[int, int] | None, gt_masks: np.ndarray | None, dt_masks: np.ndarray | None
) -> tuple[int, int]:
    sizes = []
    if image_size is not None:
        size = tuple(int(s) for s in image_size)
        if len(size) != 2 or min(size) < 1:
            raise ValueError(f"update: image_size must be (H, W) of positive integers, got {image_size!r}")
        sizes.append(("image_size", size))
    for name, masks in (("target masks", gt_masks), ("prediction masks", dt_masks)):
        if masks is not None and min(masks.shape[1:]) > 0:
            sizes.append((name, tuple(masks.shape[1:])))
    if any(size != sizes[0][1] for _, size in sizes):
        raise ValueError("update: image sizes disagree: " + ", ".join(f"{n} {s}" for n, s in sizes))
    return sizes[0][1] if sizes else (0, 0)


def _coco(images: list[dict], categories: list[dict], annotations: list[dict]) -> COCO:
    coco = COCO()
    coco.dataset = {"images": images, "categories": categories, "annotations": annotations}
    coco.createIndex()
    return coco


def _keys(max_dets: int) -> list[str]:
    keys = ["AP", "AP50", "AP75", *(f"AP_{a}" for a in _AREAS)]
    keys += list(dict.fromkeys(f"AR{k}" for k in (1, 10, max_dets)))
    return keys + [f"AR_{a}" for a in _AREAS]


def _index(thresholds: np.ndarray, value: float) -> int:
    return int(np.argmin(np.abs(np.asarray(thresholds) - value)))


def _mean(values: np.ndarray) -> float:
    # COCOeval's summarize: the mean of the defined (> -1) entries; NaN, not -1, if none.
    kept = values[values > -1]
    return float(kept.mean()) if kept.size else math.nan


def _pct(x: float) -> str:
    return f"{'-':>6}" if math.isnan(x) else f"{100 * x:6.2f}"
