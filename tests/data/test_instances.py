"""Instance data for Mask R-CNN: COCO polygons/RLE decoded as pycocotools does, DSB2018 nuclei,
bad input named, flips and rescaling that keep masks and boxes together, and ground truth
written back for pycocotools."""

from __future__ import annotations

import contextlib
import io
import json
import pickle
import shutil
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from tests.data.helpers import random_rgb, real_data, save

from atrous.data import (
    CocoInstances,
    DSB2018Nuclei,
    InstanceTrainTransforms,
    build_instance_dataset,
    collate_instances,
    list_instance_datasets,
    targets_to_coco,
)
from atrous.data.errors import DatasetError, ImageReadError, MaskValueError, SizeMismatchError
from atrous.data.instances import SkippedInstanceWarning, make_target, masks_to_boxes
from atrous.engine.sampling import KeyedAugmentation

H, W = 8, 10


def _uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE: run lengths of the column-major pixels, starting with zeros."""
    counts, value, run = [], 0, 0
    for pixel in mask.flatten(order="F"):
        if pixel != value:
            counts.append(run)
            value, run = pixel, 0
        run += 1
    counts.append(run)
    return {"counts": counts, "size": list(mask.shape)}


def _rle_mask() -> np.ndarray:
    mask = np.zeros((H, W), np.uint8)
    mask[2:5, 3:7] = 1
    return mask


def _compressed_mask() -> np.ndarray:
    mask = np.zeros((H, W), np.uint8)
    mask[5:8, 0:2] = 1
    mask[7, 2] = 1  # not a rectangle
    return mask


def _coco_json(tmp_path, *, annotations=None, images=None, extra_images=()):
    """Three images (RGB, grayscale, RGBA; the last without annotations) and three annotations:
    a polygon (category 7), an uncompressed RLE crowd region (3), a compressed RLE (7)."""
    images_dir = tmp_path / "images"
    save(images_dir / "a.png", random_rgb(H, W))
    save(images_dir / "b.png", random_rgb(H, W)[..., 0])
    save(images_dir / "c.png", np.dstack([random_rgb(H, W), np.full((H, W), 7, np.uint8)]))
    compressed = mask_utils.encode(np.asfortranarray(_compressed_mask()))
    data = {
        "images": images
        or [
            {"id": 5, "file_name": "b.png", "height": H, "width": W},
            {"id": 2, "file_name": "a.png", "height": H, "width": W},
            {"id": 9, "file_name": "c.png", "height": H, "width": W},
            *extra_images,
        ],
        "annotations": annotations
        if annotations is not None
        else [
            {"id": 1, "image_id": 2, "category_id": 7, "segmentation": [[2, 1, 6, 1, 6, 4, 2, 4]], "iscrowd": 0},
            {"id": 2, "image_id": 2, "category_id": 3, "segmentation": _uncompressed_rle(_rle_mask()), "iscrowd": 1},
            {
                "id": 3,
                "image_id": 5,
                "category_id": 7,
                "segmentation": {"size": [H, W], "counts": compressed["counts"].decode()},
                "iscrowd": 0,
            },
        ],
        "categories": [{"id": 7, "name": "cat"}, {"id": 3, "name": "dog"}],
    }
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    return images_dir, path


def _toBbox_xyxy(mask: np.ndarray) -> list[float]:
    x, y, w, h = mask_utils.toBbox(mask_utils.encode(np.asfortranarray(mask))).tolist()
    return [x, y, x + w, y + h]


def test_coco_polygon_and_both_rles_decode_to_the_expected_masks_boxes_and_labels(tmp_path):
    ds = CocoInstances(*_coco_json(tmp_path))
    assert ds.ids == [2, 5, 9] and len(ds) == 3  # sorted by image id
    assert ds.class_names == ["background", "dog", "cat"]  # category ids 3, 7 in id order
    assert ds.category_id_to_label == {3: 1, 7: 2} and ds.label_to_category_id == {1: 3, 2: 7}
    assert ds.num_classes == 3

    image, target = ds[0]  # a.png: the polygon and the uncompressed RLE
    assert image.dtype == torch.float32 and image.shape == (3, H, W)
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
    assert target["image_id"] == 2
    polygon = np.zeros((H, W), np.uint8)
    polygon[1:4, 2:6] = 1  # the rectangle (2, 1)-(6, 4) rasterises to columns 2..5, rows 1..3
    assert target["masks"].dtype == torch.uint8 and target["masks"].shape == (2, H, W)
    assert np.array_equal(target["masks"][0].numpy(), polygon)
    assert np.array_equal(target["masks"][1].numpy(), _rle_mask())
    assert target["boxes"].dtype == torch.float32
    assert target["boxes"].tolist() == [[2, 1, 6, 4], [3, 2, 7, 5]]  # x2, y2 exclusive
    assert target["boxes"].tolist() == [_toBbox_xyxy(polygon), _toBbox_xyxy(_rle_mask())]
    assert target["labels"].dtype == torch.int64 and target["labels"].tolist() == [2, 1]
    assert target["area"].dtype == torch.float32 and target["area"].tolist() == [12.0, 12.0]
    assert target["iscrowd"].dtype == torch.int64 and target["iscrowd"].tolist() == [0, 1]

    image, target = ds[1]  # b.png: grayscale, the compressed RLE
    assert image.shape == (3, H, W) and torch.equal(image[0], image[2])
    assert np.array_equal(target["masks"][0].numpy(), _compressed_mask())
    assert target["boxes"].tolist() == [[0, 5, 3, 8]] == [_toBbox_xyxy(_compressed_mask())]
    assert target["labels"].tolist() == [2] and target["area"].tolist() == [7.0]

    image, target = ds[2]  # c.png: RGBA without annotations
    assert image.shape == (3, H, W)
    assert target["boxes"].shape == (0, 4) and target["masks"].shape == (0, H, W)
    assert target["labels"].shape == (0,) and target["area"].shape == (0,) and target["iscrowd"].shape == (0,)
    assert target["boxes"].dtype == torch.float32 and target["labels"].dtype == torch.int64


def test_coco_bad_files_are_named(tmp_path):
    images_dir, path = _coco_json(tmp_path)
    broken = tmp_path / "broken.json"
    broken.write_text('{"images": [], "annotations": [,]}')
    with pytest.raises(DatasetError, match=r"broken\.json is not valid JSON: .* at line 1, column 32"):
        CocoInstances(images_dir, broken)
    keyless = tmp_path / "keyless.json"
    keyless.write_text('{"images": [], "categories": []}')
    with pytest.raises(DatasetError, match=r"keyless\.json has no 'annotations'"):
        CocoInstances(images_dir, keyless)
    with pytest.raises(FileNotFoundError, match=r"nowhere\.json does not exist"):
        CocoInstances(images_dir, tmp_path / "nowhere.json")

    data = json.loads(path.read_text())
    data["annotations"][0]["category_id"] = 99
    path.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=r"1 annotations in .*instances\.json name an category_id .*ids 1\)"):
        CocoInstances(images_dir, path)


def test_coco_missing_images_are_named_when_the_dataset_is_built(tmp_path):
    images_dir, path = _coco_json(tmp_path, extra_images=[{"id": 11, "file_name": "gone.jpg", "height": H, "width": W}])
    with pytest.raises(ImageReadError, match=r"1 of the 4 images named in .*instances\.json are missing .*: gone\.jpg"):
        CocoInstances(images_dir, path)


def test_coco_empty_and_outside_annotations_are_skipped_with_a_warning_naming_them(tmp_path):
    annotations = [
        {"id": 1, "image_id": 2, "category_id": 7, "segmentation": [[2, 1, 6, 1, 6, 4, 2, 4]]},
        # all zeros after decoding
        {"id": 21, "image_id": 2, "category_id": 7, "segmentation": {"counts": [H * W], "size": [H, W]}},
        # bbox entirely to the right of the 10-pixel-wide image
        {"id": 22, "image_id": 2, "category_id": 3, "segmentation": [[12, 1, 15, 1, 15, 4]], "bbox": [12, 1, 3, 3]},
        # partly outside: clipped by rasterisation, its box from the clipped mask, not its bbox
        {
            "id": 23,
            "image_id": 2,
            "category_id": 3,
            "segmentation": [[-3, -2, 4, -2, 4, 3, -3, 3]],
            "bbox": [-3, -2, 7, 5],
        },
    ]
    ds = CocoInstances(*_coco_json(tmp_path, annotations=annotations))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, target = ds[0]
    messages = [str(w.message) for w in caught if issubclass(w.category, SkippedInstanceWarning)]
    assert len(messages) == 2
    assert "annotation id 21" in messages[0] and "empty" in messages[0]
    assert "annotation id 22" in messages[1] and "entirely outside" in messages[1]
    assert target["labels"].tolist() == [2, 1]
    assert target["boxes"].tolist() == [[2, 1, 6, 4], [0, 0, 4, 3]]
    assert int(target["masks"][1].sum()) == 12


def test_coco_rle_of_another_size_and_malformed_segmentations_are_named(tmp_path):
    wrong = {"counts": [H * (W + 1)], "size": [H, W + 1]}
    ds = CocoInstances(
        *_coco_json(tmp_path, annotations=[{"id": 4, "image_id": 2, "category_id": 3, "segmentation": wrong}])
    )
    with pytest.raises(SizeMismatchError, match=r"annotation id 4 in .*instances\.json has an RLE of size 11×8"):
        ds[0]
    odd = [[1, 2, 3, 4, 5, 6, 7]]
    ds = CocoInstances(
        *_coco_json(tmp_path, annotations=[{"id": 6, "image_id": 2, "category_id": 3, "segmentation": odd}])
    )
    with pytest.raises(DatasetError, match=r"annotation id 6 in .*instances\.json has a polygon"):
        ds[0]


def test_coco_image_of_another_size_than_the_json_says_is_named(tmp_path):
    images = [{"id": 2, "file_name": "a.png", "height": H + 1, "width": W}]
    ds = CocoInstances(*_coco_json(tmp_path, annotations=[], images=images))
    with pytest.raises(SizeMismatchError, match=r"a\.png is 10×8 .* but .*instances\.json gives 10×9 for image id 2"):
        ds[0]


# ----------------------------------------------------------------------------- DSB2018 nuclei


def _dsb(root, count=3, *, masks_per_image=2, size=(6, 7)):
    for i in range(count):
        sample = f"id{i:02d}"
        rgba = np.dstack([random_rgb(*size, seed=i), np.full(size, 255, np.uint8)])
        save(root / sample / "images" / f"{sample}.png", rgba)
        for k in range(masks_per_image):
            mask = np.zeros(size, np.uint8)
            mask[k : k + 2, 2 * k : 2 * k + 3] = 255
            save(root / sample / "masks" / f"{sample}_{k}.png", mask)
    return root


def test_dsb_splits_ids_and_samples(tmp_path):
    _dsb(tmp_path, count=10, masks_per_image=1)
    train, val = DSB2018Nuclei(tmp_path, "train"), DSB2018Nuclei(tmp_path, "val")
    assert len(train) == 8 and len(val) == 2 and len(DSB2018Nuclei(tmp_path, "all")) == 10  # val: a fifth
    assert val.ids == ["id08", "id09"] and val.image_ids == [8, 9]
    image, target = val[1]
    assert image.shape == (3, 6, 7) and image.dtype == torch.float32  # RGBA → RGB
    assert target["image_id"] == 9 and target["labels"].tolist() == [1]
    assert target["boxes"].tolist() == [[0, 0, 3, 2]]
    assert val.class_names == ["background", "nucleus"]
    with pytest.raises(ValueError, match=r"split must be one of \('train', 'val', 'all'\); got 'test'"):
        DSB2018Nuclei(tmp_path, "test")
    with pytest.raises(FileNotFoundError, match=r"dsb2018_nuclei root folder .*nowhere does not exist"):
        DSB2018Nuclei(tmp_path / "nowhere")


def test_dsb_mask_files_in_natural_order_and_an_empty_mask_is_skipped_with_a_warning(tmp_path):
    _dsb(tmp_path, count=1, masks_per_image=3)
    save(tmp_path / "id00" / "masks" / "id00_10.png", np.zeros((6, 7), np.uint8))
    ds = DSB2018Nuclei(tmp_path, "all")
    assert [p.name for p in ds.samples[0][1]] == ["id00_0.png", "id00_1.png", "id00_2.png", "id00_10.png"]
    with pytest.warns(SkippedInstanceWarning, match=r"skipped mask .*id00_10\.png: it has no foreground"):
        _, target = ds[0]
    assert target["masks"].shape == (3, 6, 7) and target["area"].tolist() == [6.0, 6.0, 6.0]


def test_dsb_bad_folders_and_files_are_named(tmp_path):
    _dsb(tmp_path / "a", count=2)
    shutil.rmtree(tmp_path / "a" / "id01" / "masks")
    with pytest.raises(FileNotFoundError, match=r"dsb2018_nuclei mask folder .*id01/masks does not exist"):
        DSB2018Nuclei(tmp_path / "a", "all")

    _dsb(tmp_path / "b", count=1)
    (tmp_path / "b" / "id00" / "masks" / "id00_1.png").write_bytes(b"not a png")
    with pytest.raises(ImageReadError, match=r"id00_1\.png is not an image file"):
        DSB2018Nuclei(tmp_path / "b", "all")[0]

    _dsb(tmp_path / "c", count=1)
    save(tmp_path / "c" / "id00" / "masks" / "id00_1.png", np.zeros((5, 7), np.uint8))
    with pytest.raises(SizeMismatchError, match=r"image .*id00\.png is 7×6 .* but its mask .*id00_1\.png is 7×5"):
        DSB2018Nuclei(tmp_path / "c", "all")[0]

    _dsb(tmp_path / "d", count=1)
    save(tmp_path / "d" / "id00" / "masks" / "id00_1.png", np.full((6, 7), 128, np.uint8))
    with pytest.raises(MaskValueError, match=r"id00_1\.png has values \{128\}; expected 0 and 255"):
        DSB2018Nuclei(tmp_path / "d", "all")[0]

    _dsb(tmp_path / "e", count=1)
    (tmp_path / "e" / "id00" / "images" / "id00.png").rename(tmp_path / "e" / "id00" / "images" / "other.png")
    with pytest.raises(ImageReadError, match=r"images/id00\.png does not exist \(.* holds: other\.png\)"):
        DSB2018Nuclei(tmp_path / "e", "all")


def test_build_instance_dataset_by_name(tmp_path):
    _dsb(tmp_path, count=5)
    assert list_instance_datasets() == ["coco", "dsb2018_nuclei"]
    assert len(build_instance_dataset("dsb2018_nuclei", root=tmp_path, split="val")) == 1
    with pytest.raises(ValueError, match=r"unknown instance dataset 'dsb2018'\. Did you mean: dsb2018_nuclei\?"):
        build_instance_dataset("dsb2018", root=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"nowhere does not exist"):
        build_instance_dataset("coco", root=tmp_path / "nowhere")


# ----------------------------------------------------------------------------- transforms


def _sample(seed=0):
    g = np.random.default_rng(seed)
    masks = np.zeros((3, 12, 16), np.uint8)
    masks[0, 1:4, 2:9] = 1
    masks[1, 6:12, 10:16] = 1
    masks[2, 5, 0] = 1  # one pixel at the left edge
    image = torch.from_numpy(g.random((3, 12, 16), dtype=np.float32))
    return image, make_target(masks, [1, 2, 1], image_id=4, iscrowd=[0, 0, 1])


@pytest.mark.parametrize(("hflip", "vflip"), [(1.0, 0.0), (0.0, 1.0), (1.0, 1.0)])
def test_flips_move_image_masks_and_boxes_together(hflip, vflip):
    image, target = _sample()
    original = {k: v.clone() if torch.is_tensor(v) else v for k, v in target.items()}
    out_image, out = InstanceTrainTransforms(hflip=hflip, vflip=vflip, seed=0)(image, target)
    dims = [d for d, p in ((-1, hflip), (-2, vflip)) if p]
    assert torch.equal(out_image, image.flip(dims))
    assert torch.equal(out["masks"], target["masks"].flip(dims))
    assert torch.equal(out["boxes"], masks_to_boxes(out["masks"]))  # the flipped box is the flipped mask's box
    assert out["labels"].tolist() == [1, 2, 1] and out["iscrowd"].tolist() == [0, 0, 1] and out["image_id"] == 4
    for key, value in original.items():  # inputs untouched
        assert torch.equal(target[key], value) if torch.is_tensor(value) else target[key] == value


def test_rescale_recomputes_boxes_and_drops_vanished_instances():
    image, target = _sample()
    out_image, out = InstanceTrainTransforms.rescale(image, target, 0.5)
    assert out_image.shape == (3, 6, 8) and out["masks"].shape[1:] == (6, 8)
    assert out["labels"].tolist() == [1, 2]  # the one-pixel instance fell between the sampled pixels
    assert out["iscrowd"].tolist() == [0, 0] and out["image_id"] == 4
    assert torch.equal(out["boxes"], masks_to_boxes(out["masks"]))
    assert out["area"].tolist() == out["masks"].flatten(1).sum(1).float().tolist()
    up_image, up = InstanceTrainTransforms.rescale(image, target, 2.0)
    assert (
        up_image.shape == (3, 24, 32)
        and up["masks"].shape == (3, 24, 32)
        and torch.equal(up["boxes"], target["boxes"] * 2)
    )


def test_transforms_are_deterministic_given_a_seed_a_generator_or_keyed_augmentation():
    image, target = _sample()
    transform = InstanceTrainTransforms(hflip=0.5, vflip=0.5, scale_range=(0.5, 1.5))

    def run(**kwargs):
        return [transform(image, target, **kwargs)[1]["boxes"] for _ in range(6)]

    first = run(generator=torch.Generator().manual_seed(3))
    again = run(generator=torch.Generator().manual_seed(3))
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert len({tuple(b.flatten().tolist()) for b in first}) > 1  # it does vary from call to call

    seeded = [InstanceTrainTransforms(hflip=0.5, vflip=0.5, scale_range=(0.5, 1.5), seed=1) for _ in range(2)]
    assert torch.equal(seeded[0](image, target)[1]["masks"], seeded[1](image, target)[1]["masks"])
    assert pickle.loads(pickle.dumps(seeded[0])).seed == 1

    class One(torch.utils.data.Dataset):
        def __len__(self):
            return 1

        def __getitem__(self, index):
            return image, target

    keyed = KeyedAugmentation(One(), transform, seed=7)
    assert torch.equal(keyed[5][1]["boxes"], keyed[5][1]["boxes"])


def test_colour_jitter_is_torchvisions_adjustments_from_the_transforms_own_draws():
    """jitter: brightness, contrast, saturation by factors in [1 − s, 1 + s], in a drawn order,
    from the generator after the three geometric draws; image only, geometry as without it."""
    from torchvision.transforms.v2 import functional as F

    image, target = _sample()
    strength = 0.3
    out_image, out = InstanceTrainTransforms(hflip=0.5, vflip=0.5, jitter=strength, seed=11)(image, target)
    plain_image, plain = InstanceTrainTransforms(hflip=0.5, vflip=0.5, seed=11)(image, target)

    draws = torch.Generator().manual_seed(11)
    torch.rand(3, generator=draws)  # scale, horizontal and vertical flip
    factors = 1 - strength + 2 * strength * torch.rand(3, generator=draws, dtype=torch.float64)
    order = torch.randperm(3, generator=draws).tolist()
    expected = plain_image
    adjust = (F.adjust_brightness, F.adjust_contrast, F.adjust_saturation)
    for i in order:
        expected = adjust[i](expected, float(factors[i]))
    assert torch.equal(out_image, expected)
    assert not torch.equal(out_image, plain_image)
    assert all(1 - strength <= float(f) <= 1 + strength for f in factors)
    for key in ("masks", "boxes", "labels", "iscrowd", "area"):
        assert torch.equal(out[key], plain[key]), key  # the geometry is the same draw as without jitter


def test_jitter_true_is_the_semantic_default_and_bad_strengths_are_refused():
    assert InstanceTrainTransforms(jitter=True).jitter == 0.2
    assert InstanceTrainTransforms(jitter=False).jitter == 0.0 == InstanceTrainTransforms().jitter
    for bad in (1.5, -0.1):
        with pytest.raises(ValueError, match=r"jitter must be true, false or a strength in \[0, 1\]"):
            InstanceTrainTransforms(jitter=bad)


def test_collate_instances_keeps_lists():
    a, b = _sample(0), _sample(1)
    images, targets = collate_instances([a, b])
    assert isinstance(images, list) and isinstance(targets, list)
    assert images[1] is b[0] and targets[0] is a[1]


# ----------------------------------------------------------------------------- targets_to_coco


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # pycocotools under NumPy 2
def test_targets_to_coco_round_trips_through_pycocotools():
    _, first = _sample(0)
    empty = make_target(np.zeros((0, 5, 6), np.uint8), [], image_id=7)
    gt_dict = targets_to_coco([first, empty], [(12, 16), (5, 6)], ["background", "nucleus", "other"])
    json.dumps(gt_dict)  # serialisable
    assert [c["id"] for c in gt_dict["categories"]] == [1, 2]
    assert [a["id"] for a in gt_dict["annotations"]] == [1, 2, 3]  # from 1: COCOeval treats 0 as unmatched
    assert gt_dict["images"] == [{"id": 4, "height": 12, "width": 16}, {"id": 7, "height": 5, "width": 6}]
    boxes = [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in gt_dict["annotations"])]
    assert boxes == first["boxes"].tolist()
    assert [a["area"] for a in gt_dict["annotations"]] == first["area"].tolist()
    assert [a["iscrowd"] for a in gt_dict["annotations"]] == [0, 0, 1]

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = gt_dict
        gt.createIndex()
        for ann in gt_dict["annotations"]:
            assert np.array_equal(gt.annToMask(ann), first["masks"][ann["id"] - 1].numpy())
        results = [
            {
                "image_id": a["image_id"],
                "category_id": a["category_id"],
                "segmentation": a["segmentation"],
                "score": 1.0,
            }
            for a in gt_dict["annotations"]
            if not a["iscrowd"]
        ]
        evaluation = COCOeval(gt, gt.loadRes(results), "segm")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    assert evaluation.stats[0] == pytest.approx(1.0)  # the ground truth as detections: AP 1

    mapped = targets_to_coco([first], [(12, 16)], ["a", "b"], label_to_category_id={1: 3, 2: 7})
    assert [a["category_id"] for a in mapped["annotations"]] == [3, 7, 3]
    with pytest.raises(ValueError, match=r"masks of shape \(3, 12, 16\) .* height × width 12 × 15"):
        targets_to_coco([first], [(12, 15)], ["a", "b"])
    with pytest.raises(ValueError, match=r"labels \[2\] outside 1\.\.1"):
        targets_to_coco([first], [(12, 16)], ["a"])


# ----------------------------------------------------------------------------- the real data


def test_real_dsb2018_nuclei_when_present():
    root = real_data("dsb2018_nuclei")
    train, val = DSB2018Nuclei(root, "train"), DSB2018Nuclei(root, "val")
    assert (len(train), len(val)) == (52, 13)
    assert set(train.ids).isdisjoint(val.ids) and sorted(train.ids + val.ids) == train.ids + val.ids
    image, target = train[0]
    assert image.shape[0] == 3 and image.dtype == torch.float32
    height, width = image.shape[1:]
    mask_files = list((root / train.ids[0] / "masks").glob("*.png"))
    assert len(target["labels"]) == len(mask_files) > 0  # the real masks are never empty
    masks = target["masks"]
    assert masks.dtype == torch.uint8 and masks.shape == (len(mask_files), height, width)
    assert set(masks.unique().tolist()) == {0, 1}
    boxes = target["boxes"]
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all()
    assert (boxes[:, 2:] > boxes[:, :2]).all()
    assert torch.equal(boxes, masks_to_boxes(masks)) and (target["labels"] == 1).all()
    every = DSB2018Nuclei(root, "all")
    rgba = next(i for i, (path, _) in enumerate(every.samples) if Image.open(path).mode == "RGBA")
    assert every.load(rgba)[0].shape[0] == 3  # alpha dropped
