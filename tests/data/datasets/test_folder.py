"""FolderDataset: pairing by name, every bad input named, label and colour maps, real membrane/humanseg files."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from tests.data.helpers import make_pair, random_rgb, real_data, save
from torch.utils.data import DataLoader

from atrous.data import FolderDataset, train_transforms
from atrous.data.errors import EmptyDatasetError, MaskValueError, SizeMismatchError, UnmatchedFilesError


def test_pairs_by_name_across_extensions_and_subfolders(tmp_path):
    make_pair(tmp_path, "b", np.zeros((4, 5), np.uint8), ext=".jpg")
    make_pair(tmp_path, "a", np.ones((4, 5), np.uint8), ext=".PNG")
    make_pair(tmp_path, "street/c", np.full((4, 5), 2, np.uint8), ext=".bmp")
    (tmp_path / "images" / ".DS_Store").write_bytes(b"junk")
    ds = FolderDataset(tmp_path, num_classes=3)
    assert [(i.name, m.name) for i, m in ds.samples] == [("a.PNG", "a.png"), ("b.jpg", "b.png"), ("c.bmp", "c.png")]
    image, mask = ds[2]
    assert image.dtype == torch.uint8 and image.shape == (3, 4, 5)
    assert mask.dtype == torch.int64 and mask.shape == (4, 5) and mask.unique().tolist() == [2]
    assert ds.class_names == ["class_0", "class_1", "class_2"] and len(ds.palette) == 3


def test_mask_suffix(tmp_path):
    save(tmp_path / "images" / "x.jpg", random_rgb(4, 4))
    save(tmp_path / "masks" / "x_mask.png", np.zeros((4, 4), np.uint8))
    assert len(FolderDataset(tmp_path, num_classes=2, mask_suffix="_mask")) == 1


def test_missing_folder_is_named(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(FileNotFoundError, match=re.escape(f"mask folder {tmp_path / 'masks'} does not exist")):
        FolderDataset(tmp_path, num_classes=2)


def test_empty_dataset_at_construction(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    with pytest.raises(EmptyDatasetError, match=rf"no image files .* in {re.escape(str(tmp_path / 'images'))}"):
        FolderDataset(tmp_path, num_classes=2)


def test_no_image_has_a_mask(tmp_path):
    save(tmp_path / "images" / "a.png", random_rgb(4, 4))
    save(tmp_path / "masks" / "b.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(EmptyDatasetError, match=r"no image in .* has a mask.*a\.png.*b\.png"):
        FolderDataset(tmp_path, num_classes=2)


def test_unmatched_files_are_reported_or_skipped(tmp_path):
    make_pair(tmp_path, "a", np.zeros((4, 4), np.uint8))
    save(tmp_path / "images" / "lonely.jpg", random_rgb(4, 4))
    save(tmp_path / "masks" / "orphan.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(
        UnmatchedFilesError, match=r"1 image .* without a mask .*\(lonely\.jpg\); 1 mask .*\(orphan\.png\)"
    ):
        FolderDataset(tmp_path, num_classes=2)
    ds = FolderDataset(tmp_path, num_classes=2, allow_unmatched=True)
    assert len(ds) == 1 and sorted(p.name for p in ds.unmatched) == ["lonely.jpg", "orphan.png"]


def test_size_mismatch_names_both_files_and_sizes(tmp_path):
    image_path, mask_path = make_pair(tmp_path, "a", np.zeros((4, 6), np.uint8), image_size=(8, 12))
    ds = FolderDataset(tmp_path, num_classes=2)
    with pytest.raises(SizeMismatchError) as info:
        ds[0]
    message = str(info.value)
    assert str(image_path) in message and str(mask_path) in message
    assert "12×8" in message and "6×4" in message and "resize_masks=True" in message


def test_resize_masks_nearest(tmp_path):
    mask = np.zeros((4, 6), np.uint8)
    mask[:, 3:] = 1
    make_pair(tmp_path, "a", mask, image_size=(8, 12))
    image, resized = FolderDataset(tmp_path, num_classes=2, resize_masks=True)[0]
    assert image.shape == (3, 8, 12) and resized.shape == (8, 12)
    assert resized[:, :6].eq(0).all() and resized[:, 6:].eq(1).all()


def test_mask_values_out_of_range_are_named(tmp_path):
    mask = np.array([[0, 1, 14], [17, 255, 0]], np.uint8)
    _, mask_path = make_pair(tmp_path, "a", mask)
    ds = FolderDataset(tmp_path, num_classes=11)
    with pytest.raises(MaskValueError, match=re.escape(f"{mask_path} has labels {{14, 17}}; expected 0..10 or 255")):
        ds[0]


def test_label_map_for_binary_masks(tmp_path):
    make_pair(tmp_path, "a", np.array([[0, 255], [255, 0]], np.uint8))
    ds = FolderDataset(tmp_path, num_classes=2, label_map={0: 0, 255: 1})
    assert ds[0][1].tolist() == [[0, 1], [1, 0]]
    make_pair(tmp_path, "b", np.array([[0, 128], [255, 0]], np.uint8))
    with pytest.raises(MaskValueError, match=r"b\.png has labels \{128\}; expected 0..1 or 255 after label_map"):
        FolderDataset(tmp_path, num_classes=2, label_map={0: 0, 255: 1})[1]


def test_label_map_keys_written_as_text_are_converted(tmp_path):
    # As -o 'label_map={"0": 0, "255": 1}' (JSON: keys are strings) or a quoted YAML key gives them.
    make_pair(tmp_path, "a", np.array([[0, 255], [255, 0]], np.uint8))
    ds = FolderDataset(tmp_path, num_classes=2, label_map={"0": 0, "255": "1"})
    assert ds.label_map == {0: 0, 255: 1} and ds[0][1].tolist() == [[0, 1], [1, 0]]


def test_a_bad_label_map_is_named_before_any_file_is_read(tmp_path):
    # No images folder at all: the label_map error comes first.
    with pytest.raises(ValueError, match=r"label_map entry \{'fg': 1\}: the stored value must be an integer"):
        FolderDataset(tmp_path, num_classes=2, label_map={0: 0, "fg": 1})
    with pytest.raises(ValueError, match=r"label_map entry \{255: 2\}: the class must be an integer 0\.\.1"):
        FolderDataset(tmp_path, num_classes=2, label_map={0: 0, 255: 2})


def test_atrous_doctor_reads_a_json_label_map_and_names_a_bad_one(tmp_path, capsys):
    from atrous.cli import main

    make_pair(tmp_path, "a", np.array([[0, 255], [255, 0]], np.uint8))
    root = ["doctor", "folder", "--root", str(tmp_path), "-o", "num_classes=2"]
    assert main([*root, "-o", 'label_map={"0": 0, "255": 1}']) == 0
    assert "Problems: none" in capsys.readouterr().out
    assert main([*root, "-o", 'label_map={"0": 0, "255": 7}']) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith("atrous doctor: error: label_map entry {'255': 7}: the class must be an integer 0..1")
        and "\n" not in err
    )


def test_color_map_masks(tmp_path):
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[0, 1] = (128, 64, 128)
    rgb[1, 0] = (128, 128, 128)  # gray: still read as a colour when there is a color_map
    make_pair(tmp_path, "a", rgb)
    color_map = {(0, 0, 0): 255, (128, 64, 128): 1, (128, 128, 128): 0}
    ds = FolderDataset(tmp_path, num_classes=2, color_map=color_map)
    assert ds[0][1].tolist() == [[255, 1], [0, 255]]
    assert ds.palette == [(128, 128, 128), (128, 64, 128)]
    with pytest.raises(MaskValueError, match=r"a\.png is a colour \(RGB\) mask; pass color_map"):
        FolderDataset(tmp_path, num_classes=2)[0]
    with pytest.raises(ValueError, match=r"color_map entry \{\(0, 0, 0\): 5\}: the class must be an integer 0\.\.1"):
        FolderDataset(tmp_path, num_classes=2, color_map={(0, 0, 0): 5})
    # As a YAML or JSON config can write it (keys cannot be lists there): "r,g,b" or "#rrggbb".
    written = {"0,0,0": 255, "#804080": 1, " 128, 128, 128 ": 0}
    assert FolderDataset(tmp_path, num_classes=2, color_map=written)[0][1].tolist() == [[255, 1], [0, 255]]
    for bad, says in (
        ([1, 2], "color_map must be a mapping {colour: class_index}"),
        ({"0,0": 1}, "the colour must be three integers 0..255"),
        ({"#12345": 1}, "the colour must be three integers 0..255"),
        ({(0, 0, 256): 1}, "the colour must be three integers 0..255"),
        ({(0, 0, 0): 1, "0,0,0": 0}, "lists the colour (0, 0, 0) twice"),
    ):
        with pytest.raises(ValueError, match=re.escape(says)):
            FolderDataset(tmp_path, num_classes=2, color_map=bad)


@pytest.mark.parametrize(
    ("option", "says"),
    [
        ({"num_classes": "abc"}, "num_classes must be a positive integer, got 'abc'"),
        ({"mask_suffix": 7}, "mask_suffix must be text"),
        ({"resize_masks": "maybe"}, "resize_masks must be true or false, got 'maybe'"),
        ({"allow_unmatched": 1}, "allow_unmatched must be true or false"),
    ],
)
def test_options_from_a_config_are_checked_by_type(tmp_path, option, says):
    make_pair(tmp_path, "a", np.zeros((2, 2), np.uint8))
    with pytest.raises(ValueError, match=re.escape(says)):
        FolderDataset(tmp_path, **{"num_classes": 2, **option})


def test_exif_rotated_image_and_mask_stay_aligned(tmp_path):
    labels = np.zeros((4, 6), np.uint8)
    labels[:, 4:] = 1
    save(
        tmp_path / "images" / "a.png",
        np.where(labels[..., None] == 1, 255, 0).astype(np.uint8).repeat(3, 2),
        exif_orientation=6,
    )
    save(tmp_path / "masks" / "a.png", labels, exif_orientation=6)
    image, mask = FolderDataset(tmp_path, num_classes=2)[0]
    assert mask.shape == (6, 4)
    assert torch.equal(image[0] == 255, mask == 1)


def test_exif_on_the_image_only_is_explained(tmp_path):
    save(tmp_path / "images" / "a.png", random_rgb(4, 6), exif_orientation=6)
    save(tmp_path / "masks" / "a.png", np.zeros((4, 6), np.uint8))
    with pytest.raises(SizeMismatchError, match=r"transposed.*EXIF orientation"):
        FolderDataset(tmp_path, num_classes=2)[0]


def test_transforms_and_default_collate(tmp_path):
    for name in ("a", "b"):
        make_pair(tmp_path, name, np.ones((20, 30), np.uint8))
    ds = FolderDataset(tmp_path, num_classes=2, transforms=train_transforms(16))
    images, masks = next(iter(DataLoader(ds, batch_size=2)))
    assert images.shape == (2, 3, 16, 16) and images.dtype == torch.float32
    assert masks.shape == (2, 16, 16) and masks.dtype == torch.int64


def test_real_membrane():
    root = real_data("membrane")
    ds = FolderDataset(root, images="image", masks="label", num_classes=2, label_map={0: 0, 255: 1})
    for index in (0, 1):
        image, mask = ds[index]
        assert image.shape == (3, 512, 512) and mask.shape == (512, 512)
        assert set(mask.unique().tolist()) == {0, 1}  # 0 = membrane, 1 = cell


def test_real_humanseg_masks_need_resizing():
    root = real_data("humanseg")
    ds = FolderDataset(root, num_classes=2, label_map={0: 0, 255: 1}, resize_masks=True)
    index = next((i for i, (image, _) in enumerate(ds.samples) if image.name == "100.jpg"), None)
    if index is None:
        pytest.skip(f"{root}/images/100.jpg (whose mask is smaller than the image) is not here")
    image, mask = ds[index]
    assert mask.shape == image.shape[1:] and set(mask.unique().tolist()) <= {0, 1}
