"""COCO-format instance annotations: reading them as Mask R-CNN samples, and writing targets back.

:class:`CocoInstances` reads an instance JSON (Lin et al., "Microsoft COCO: Common Objects
in Context", ECCV 2014; the format of ``instances_*.json``) through pycocotools. Every
segmentation form COCO uses is decoded with ``pycocotools.mask`` at the image's size:
polygons (an object may have several parts, merged into one mask), uncompressed RLE
(``counts`` a list, COCO's crowd regions) and compressed RLE (``counts`` a string).

The file is read with :mod:`json` first, so that a broken file is named with the position
of the error, and every record the samples need is checked when the dataset is built:
images (``id``, ``file_name``, ``height``, ``width``), annotations (``id``, ``image_id``,
``category_id``, ``segmentation``) and categories (``id``, ``name``). Every image file is
looked for then too, so a missing image stops the run at once, not hours into training.

Bad input, case by case:

- a file that does not parse, is not a JSON object, or lacks ``images``, ``annotations`` or
  ``categories`` → :class:`~atrous.data.errors.DatasetError` naming the file (and the line
  and column of a JSON error); a record without a needed key, a duplicate image id, or an
  annotation that names an unknown image or category → the same, naming the record;
- images named in the file but missing from ``images_dir`` → :class:`ImageReadError` when
  the dataset is built, naming the annotation file and the first few missing files;
- an image whose file is not the ``width × height`` the JSON gives, or an RLE whose ``size``
  is not its image's → :class:`SizeMismatchError` naming both;
- a segmentation that is malformed (not a list or an RLE dict, an odd-length polygon, an
  uncompressed RLE whose counts do not add up to ``height × width``) → :class:`DatasetError`
  naming the annotation id and the file;
- an annotation whose ``bbox`` lies entirely outside its image → skipped with a
  :class:`SkippedInstanceWarning` naming the annotation id; one partly outside is kept: its
  mask, decoded at the image's size, clips it (a polygon is rasterised inside the image
  only) and its box is computed from that mask, as every box is;
- an empty mask (a polygon of fewer than three points, one wholly outside the image, an RLE
  of zeros) → skipped with a :class:`SkippedInstanceWarning` naming the annotation id.

Images without annotations (or whose annotations were all skipped) are kept, with empty
targets. Crowd annotations are kept, with ``iscrowd = 1``.

:func:`targets_to_coco` goes the other way: targets (ground truth, in label space) become a
COCO dict that ``pycocotools.coco.COCO`` indexes, for ``COCOeval``.
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from ..datasets._files import require_dir
from ..errors import DatasetError, ImageReadError, SizeMismatchError
from ..io import read_image
from .target import InstanceDataset, InstanceTransforms, SkippedInstanceWarning, Target, instance_sample, rle_areas

_MAX_LISTED = 5
_SINGULAR = {"images": "image", "annotations": "annotation", "categories": "category"}
_REQUIRED = {
    "images": ("id", "file_name", "height", "width"),
    "annotations": ("id", "image_id", "category_id", "segmentation"),
    "categories": ("id", "name"),
}


def _listing(items: Sequence[Any]) -> str:
    shown = ", ".join(str(item) for item in items[:_MAX_LISTED])
    return shown + (f", … and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else "")


def read_coco_json(path: str | Path) -> dict[str, Any]:
    """Read and check a COCO instance annotation file.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        DatasetError: the file is not UTF-8 JSON, not an object, lacks ``images``,
            ``annotations`` or ``categories``, or has a record without a needed key, a
            duplicate id, or an annotation that names an unknown image or category.
    """
    path = Path(path)
    if not path.is_file():
        state = "is not a file" if path.exists() else "does not exist"
        raise FileNotFoundError(f"COCO annotation file {path} {state}")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as exc:
        raise DatasetError(
            f"COCO annotation file {path} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from exc
    except UnicodeDecodeError as exc:
        raise DatasetError(f"COCO annotation file {path} is not UTF-8 text ({exc})") from exc
    if not isinstance(data, dict):
        raise DatasetError(f"COCO annotation file {path} holds a JSON {type(data).__name__}, not an object")
    missing = [key for key in _REQUIRED if key not in data]
    if missing:
        raise DatasetError(
            f"COCO annotation file {path} has no {', '.join(repr(k) for k in missing)} "
            f"(it has: {', '.join(repr(k) for k in data) or 'nothing'}); an instance file needs "
            "'images', 'annotations' and 'categories'"
        )
    for section, keys in _REQUIRED.items():
        records = data[section]
        if not isinstance(records, list):
            raise DatasetError(f"{section!r} in {path} is a {type(records).__name__}, not a list")
        for i, record in enumerate(records):
            lacking = [key for key in keys if not isinstance(record, dict) or key not in record]
            if lacking:
                name = f"id {record['id']}" if isinstance(record, dict) and "id" in record else f"number {i}"
                raise DatasetError(
                    f"{_SINGULAR[section]} {name} in {path} has no {', '.join(repr(k) for k in lacking)}"
                )
        duplicates = [key for key, count in Counter(r["id"] for r in records).items() if count > 1]
        if duplicates:
            raise DatasetError(f"{path} repeats the {_SINGULAR[section]} ids {_listing(sorted(duplicates))}")
    image_ids = {image["id"] for image in data["images"]}
    category_ids = {category["id"] for category in data["categories"]}
    for field, known, section in (("image_id", image_ids, "images"), ("category_id", category_ids, "categories")):
        orphans = [a["id"] for a in data["annotations"] if a[field] not in known]
        if orphans:
            raise DatasetError(
                f"{len(orphans)} annotations in {path} name an {field} that is not in its {section!r} "
                f"(annotation ids {_listing(orphans)})"
            )
    return data


def _index(data: dict[str, Any]) -> COCO:
    """A pycocotools ``COCO`` over ``data``, without its progress prints."""
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _bbox_outside(ann: Mapping[str, Any], height: int, width: int) -> bool:
    bbox = ann.get("bbox")
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        return False
    try:
        x, y, w, h = (float(v) for v in bbox)
    except (TypeError, ValueError):
        return False
    return x >= width or y >= height or x + w <= 0 or y + h <= 0


class CocoInstances(InstanceDataset):
    """A COCO-format instance dataset as Mask R-CNN samples (see :mod:`atrous.data.instances.target`).

    Images are taken in order of their COCO id. Category ids become contiguous labels
    ``1..C`` in order of category id (COCO's 80 ids run 1..90 with gaps); label 0 is the
    background.

    Args:
        images_dir: the folder that ``file_name`` is relative to.
        annotation_file: the instance JSON.
        transforms: ``(image, target) -> (image, target)``, after decoding and checking.

    Attributes:
        coco: the pycocotools ``COCO`` index of the file (for ``COCOeval``).
        ids: the COCO image ids, in sample order.
        class_names: ``["background", <category names by id>]``.
        category_id_to_label: ``{category_id: label}``.
        label_to_category_id: ``{label: category_id}``, to write results with the file's ids.

    Raises:
        FileNotFoundError: ``images_dir`` or ``annotation_file`` does not exist.
        DatasetError: a broken annotation file (see the module docstring).
        ImageReadError: images named in the file are missing.
    """

    def __init__(
        self, images_dir: str | Path, annotation_file: str | Path, transforms: InstanceTransforms | None = None
    ) -> None:
        self.images_dir = require_dir(Path(images_dir), "COCO image folder")
        self.annotation_file = Path(annotation_file)
        self.coco = _index(read_coco_json(self.annotation_file))
        self.ids = sorted(self.coco.imgs)
        missing = [
            self.coco.imgs[i]["file_name"]
            for i in self.ids
            if not (self.images_dir / self.coco.imgs[i]["file_name"]).is_file()
        ]
        if missing:
            raise ImageReadError(
                f"{len(missing)} of the {len(self.ids)} images named in {self.annotation_file} are missing from "
                f"{self.images_dir}: {_listing(missing)}"
            )
        category_ids = sorted(self.coco.cats)
        self.category_id_to_label = {cat_id: label for label, cat_id in enumerate(category_ids, start=1)}
        self.label_to_category_id = {label: cat_id for cat_id, label in self.category_id_to_label.items()}
        self.class_names = ["background"] + [str(self.coco.cats[c]["name"]) for c in category_ids]
        self.transforms = transforms

    def __len__(self) -> int:
        return len(self.ids)

    def image_path(self, index: int) -> Path:
        return self.images_dir / self.coco.imgs[self.ids[index]]["file_name"]

    def decode(self, ann: Mapping[str, Any], height: int, width: int) -> np.ndarray:
        """An annotation's segmentation as a ``uint8 (H, W)`` 0/1 mask.

        Raises:
            SizeMismatchError: an RLE whose ``size`` is not ``[height, width]``.
            DatasetError: a malformed segmentation.
        """
        segm = ann["segmentation"]
        where = f"annotation id {ann['id']} in {self.annotation_file}"
        try:
            if isinstance(segm, list):
                polygons = []
                for polygon in segm:
                    if not isinstance(polygon, list) or len(polygon) % 2:
                        raise DatasetError(f"{where} has a polygon that is not an even-length list of x, y numbers")
                    if len(polygon) >= 6:  # fewer than 3 points enclose nothing (and 4 numbers read as a box)
                        polygons.append([float(v) for v in polygon])
                if not polygons:
                    return np.zeros((height, width), dtype=np.uint8)
                rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
            elif isinstance(segm, dict) and "counts" in segm and "size" in segm:
                size = [int(v) for v in segm["size"]]
                if size != [height, width]:
                    raise SizeMismatchError(
                        f"{where} has an RLE of size {size[1]}×{size[0]} (width×height) "
                        f"but its image is {width}×{height}"
                    )
                counts = segm["counts"]
                if isinstance(counts, list):  # uncompressed RLE
                    if sum(int(c) for c in counts) != height * width:
                        raise DatasetError(
                            f"{where} has an uncompressed RLE whose counts add up to {sum(counts)}, "
                            f"not height × width = {height * width}"
                        )
                    rle = mask_utils.frPyObjects({"counts": [int(c) for c in counts], "size": size}, height, width)
                elif isinstance(counts, (str, bytes)):  # compressed RLE
                    rle = {"counts": counts.encode("ascii") if isinstance(counts, str) else counts, "size": size}
                else:
                    raise DatasetError(f"{where} has RLE counts of type {type(counts).__name__}")
            else:
                raise DatasetError(
                    f"{where} has a segmentation of type {type(segm).__name__}; expected a list of polygons "
                    "or an RLE dict with 'counts' and 'size'"
                )
            with warnings.catch_warnings():
                # pycocotools 2.0.x under NumPy 2 warns about its own __array__ on every decode.
                warnings.filterwarnings("ignore", message=r"__array__ implementation", category=DeprecationWarning)
                mask = mask_utils.decode(rle)
        except DatasetError:
            raise
        except Exception as exc:  # pycocotools raises TypeError, ValueError, … on malformed input
            raise DatasetError(f"{where} has a segmentation that pycocotools cannot decode ({exc})") from exc
        return np.ascontiguousarray(mask, dtype=np.uint8)

    def load(self, index: int) -> tuple[torch.Tensor, Target]:
        """Sample ``index`` decoded and checked, before ``transforms``.

        Raises:
            ImageReadError: the image cannot be read.
            SizeMismatchError: the image file's size is not the JSON's, or an RLE's size is not the image's.
            DatasetError: a malformed segmentation.
        """
        image_id = self.ids[index]
        info = self.coco.imgs[image_id]
        path = self.image_path(index)
        image = read_image(path)  # (3, H, W) uint8
        height, width = int(image.shape[1]), int(image.shape[2])
        if (height, width) != (int(info["height"]), int(info["width"])):
            raise SizeMismatchError(
                f"image {path} is {width}×{height} (width×height) but {self.annotation_file} gives "
                f"{info['width']}×{info['height']} for image id {image_id}"
            )
        masks, labels, crowd = [], [], []
        for ann in sorted(self.coco.imgToAnns.get(image_id, []), key=lambda a: a["id"]):
            if _bbox_outside(ann, height, width):
                warnings.warn(
                    f"skipped annotation id {ann['id']} of image {path}: its bbox {ann['bbox']} lies entirely "
                    f"outside the {width}×{height} image",
                    SkippedInstanceWarning,
                    stacklevel=2,
                )
                continue
            mask = self.decode(ann, height, width)
            if not mask.any():
                warnings.warn(
                    f"skipped annotation id {ann['id']} of image {path}: its mask is empty at the image's size "
                    f"{width}×{height}",
                    SkippedInstanceWarning,
                    stacklevel=2,
                )
                continue
            masks.append(mask)
            labels.append(self.category_id_to_label[ann["category_id"]])
            crowd.append(int(bool(ann.get("iscrowd", 0))))
        return instance_sample(image, masks, labels, image_id=image_id, iscrowd=crowd)

    def __repr__(self) -> str:
        return (
            f"CocoInstances(images_dir={str(self.images_dir)!r}, annotation_file={str(self.annotation_file)!r}, "
            f"images={len(self)}, classes={self.num_classes - 1})"
        )


def targets_to_coco(
    targets: Sequence[Mapping[str, Any]],
    image_sizes: Sequence[tuple[int, int]],
    categories: Sequence[str],
    *,
    label_to_category_id: Mapping[int, int] | None = None,
) -> dict[str, Any]:
    """Ground-truth targets → a COCO instance dict, for ``pycocotools`` evaluation.

    Each target's masks become compressed-RLE segmentations (``pycocotools.mask.encode`` on
    Fortran-ordered ``uint8``, ``counts`` as ``str`` so the dict is JSON-serialisable), with
    ``bbox = [x, y, w, h]`` and ``area`` (pixels) from ``pycocotools.mask.toBbox`` / ``area``.
    Annotation ids run from 1 (``COCOeval`` treats an id of 0 as "unmatched"). The result
    goes straight into pycocotools::

        gt = COCO(); gt.dataset = targets_to_coco(targets, sizes, dataset.class_names); gt.createIndex()
        dt = gt.loadRes(results)  # results: [{"image_id", "category_id", "segmentation", "score"}, …]
        COCOeval(gt, dt, "segm")

    Detections must then use the same category ids: the labels themselves, or
    ``label_to_category_id[label]`` when that is given.

    Args:
        targets: dicts with ``image_id``, ``labels (N,)`` and ``masks (N, H, W)`` (tensors or
            arrays, any device; nonzero is the instance), optionally ``iscrowd (N,)``.
        image_sizes: ``(height, width)`` of each target's image; its masks must have that size.
        categories: the names of labels ``1..C``. A list that starts with ``"background"``
            (a dataset's ``class_names``) is accepted and the background dropped.
        label_to_category_id: write these category ids instead of the labels (for instance
            :class:`CocoInstances`'s, to compare with the original annotation file).

    Returns:
        ``{"images": [{"id", "height", "width"}], "annotations": [{"id", "image_id",
        "category_id", "segmentation", "area", "bbox", "iscrowd"}], "categories": [{"id", "name"}]}``.

    Raises:
        ValueError: lengths or sizes that disagree, a repeated ``image_id``, or a label
            outside ``1..C``.
    """
    if len(targets) != len(image_sizes):
        raise ValueError(f"{len(targets)} targets but {len(image_sizes)} image sizes")
    names = list(categories)
    if names and names[0] == "background":
        names = names[1:]
    if label_to_category_id is None:
        label_to_category_id = {label: label for label in range(1, len(names) + 1)}
    missing = [label for label in range(1, len(names) + 1) if label not in label_to_category_id]
    if missing:
        raise ValueError(f"label_to_category_id has no category id for labels {missing}")
    coco: dict[str, Any] = {
        "images": [],
        "annotations": [],
        "categories": [{"id": int(label_to_category_id[i]), "name": name} for i, name in enumerate(names, start=1)],
    }
    seen: set[int] = set()
    for target, size in zip(targets, image_sizes, strict=True):
        image_id = int(target["image_id"])
        height, width = (int(v) for v in size)
        if image_id in seen:
            raise ValueError(f"image_id {image_id} appears in more than one target")
        seen.add(image_id)
        coco["images"].append({"id": image_id, "height": height, "width": width})
        masks = np.asarray(torch.as_tensor(target["masks"]).detach().cpu() != 0, dtype=np.uint8)
        labels = torch.as_tensor(target["labels"]).detach().cpu().reshape(-1).tolist()
        if masks.ndim != 3 or masks.shape[1:] != (height, width) or masks.shape[0] != len(labels):
            raise ValueError(
                f"target of image_id {image_id}: masks of shape {masks.shape} and {len(labels)} labels "
                f"for an image of height × width {height} × {width}"
            )
        crowd = target.get("iscrowd")
        crowd = [0] * len(labels) if crowd is None else torch.as_tensor(crowd).cpu().reshape(-1).tolist()
        if len(crowd) != len(labels):
            raise ValueError(f"target of image_id {image_id}: {len(crowd)} iscrowd flags for {len(labels)} labels")
        bad = [label for label in labels if not 1 <= label <= len(names)]
        if bad:
            raise ValueError(f"target of image_id {image_id} has labels {sorted(set(bad))} outside 1..{len(names)}")
        if not labels:
            continue
        rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0)))  # (H, W, N) Fortran order
        areas = rle_areas(rles)
        boxes = mask_utils.toBbox(rles)
        for rle, area, box, label, is_crowd in zip(rles, areas, boxes, labels, crowd, strict=True):
            coco["annotations"].append(
                {
                    "id": len(coco["annotations"]) + 1,
                    "image_id": image_id,
                    "category_id": int(label_to_category_id[label]),
                    "segmentation": {"size": [height, width], "counts": rle["counts"].decode("ascii")},
                    "area": float(area),
                    "bbox": [float(v) for v in box],
                    "iscrowd": int(bool(is_crowd)),
                }
            )
    return coco
