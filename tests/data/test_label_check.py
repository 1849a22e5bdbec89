"""Training's label check: a sample of the masks, degenerate labels stop the run, absent classes warn."""

from __future__ import annotations

import numpy as np
import pytest
from tests.data.helpers import make_pair

from atrous.config import load_config
from atrous.data import FolderDataset, MaskValueError, SyntheticShapes
from atrous.data.label_check import LabelError, census, check_training_labels, sample_indices


def _binary(i: int) -> np.ndarray:
    mask = np.zeros((6, 6), np.uint8)
    mask[1 + i % 3 : 4, 1:4] = 255  # 0/255, as many tools export foreground masks
    return mask


def _folder(root, masks, **options) -> FolderDataset:
    for i, mask in enumerate(masks):
        make_pair(root, f"{i:03d}", mask)
    return FolderDataset(root, **{"num_classes": 2, **options})


def test_binary_masks_with_two_classes_stop_training_and_say_the_fix(tmp_path):
    ds = _folder(tmp_path, [_binary(i) for i in range(5)])
    with pytest.raises(LabelError) as info:
        check_training_labels(ds)
    message = str(info.value)
    assert "in all 5 masks, 5 hold only the values 0 and 255" in message
    assert "every foreground pixel would be ignored" in message and "only class_0" in message
    assert message.endswith("set data.options.label_map={0: 0, 255: 1}")
    assert "\n" not in message and str(tmp_path) in message  # one line, naming the dataset
    # The fix works: both classes present, nothing to say.
    fixed = FolderDataset(tmp_path, num_classes=2, label_map={0: 0, 255: 1})
    assert check_training_labels(fixed).present == [0, 1]


def test_a_large_dataset_is_sampled_not_scanned(tmp_path, monkeypatch):
    ds = _folder(tmp_path, [_binary(i) for i in range(80)])
    read = []
    original = FolderDataset.read_raw_mask
    monkeypatch.setattr(FolderDataset, "read_raw_mask", lambda self, path: read.append(path) or original(self, path))
    with pytest.raises(LabelError, match=r"in a sample of 64 of 80 masks, 64 hold only the values 0 and 255"):
        check_training_labels(ds)
    assert len(read) == 64 and read[0].name == "000.png" and read[-1].name == "079.png"  # evenly spread
    assert sample_indices(5, 64) == [0, 1, 2, 3, 4] and sample_indices(10, 4) == [0, 3, 6, 9]


def test_a_class_missing_from_a_sample_is_a_warning(tmp_path, capsys):
    masks = [np.zeros((4, 4), np.uint8) for _ in range(10)]
    for mask in masks:
        mask[:2] = 1
    masks[1][3, 3] = 2  # class 2 only in a mask the sample of 4 skips: rare, not necessarily missing
    ds = _folder(tmp_path, masks, num_classes=3)
    found = check_training_labels(ds, sample=4)
    assert found.absent == [2] and found.masks_read == 4
    err = capsys.readouterr().err
    assert "warning: training labels: class class_2 never appears in a sample of 4 of 10 masks: fine if rare" in err
    check_training_labels(ds, sample=4, quiet=True)  # DDP ranks other than 0
    assert capsys.readouterr().err == ""


def test_one_class_is_degenerate_only_when_every_mask_was_read(tmp_path, capsys):
    ds = _folder(tmp_path, [np.zeros((4, 4), np.uint8) for _ in range(6)])
    # A sample showing one class may have missed a rare foreground: warn.
    assert check_training_labels(ds, sample=3).present == [0]
    assert "class class_1 never appears in a sample of 3 of 6 masks" in capsys.readouterr().err
    # Every mask read and one class: nothing to learn.
    with pytest.raises(LabelError, match=r"the dataset's masks \(all 6 masks\) hold only class_0 of its 2 classes"):
        check_training_labels(ds)


def test_bad_masks_raise_the_loaders_error_and_synthetic_data_is_not_checked(tmp_path):
    ds = _folder(tmp_path, [np.array([[0, 1], [7, 7]], np.uint8)])
    with pytest.raises(MaskValueError, match=r"000\.png has labels \{7\}"):
        check_training_labels(ds)
    assert census(SyntheticShapes(4)) is None and check_training_labels(SyntheticShapes(4)) is None


def test_the_trainer_stops_before_building_the_model(tmp_path, monkeypatch):
    from atrous.engine import trainer as trainer_module
    from atrous.engine.tasks import semantic as semantic_task

    _folder(tmp_path / "data", [_binary(i) for i in range(3)])
    monkeypatch.setattr(semantic_task, "build_model", lambda *a: pytest.fail("built a model"))
    config = load_config(
        None,
        [
            "data.dataset=folder",
            f"data.root={tmp_path / 'data'}",
            "data.val_split=train",
            "data.options={num_classes: 2}",
            "data.workers=0",
        ],
    )
    with pytest.raises(LabelError, match=r"label_map=\{0: 0, 255: 1\}"):
        trainer_module.Trainer(config, tmp_path / "run")


def test_atrous_train_says_it_in_one_line(tmp_path, capsys):
    from atrous.cli import main

    _folder(tmp_path / "data", [_binary(i) for i in range(3)])
    data = ["dataset=folder", f"root={tmp_path / 'data'}", "val_split=train", "options={num_classes: 2}", "workers=0"]
    overrides = [arg for item in data for arg in ("--set", f"data.{item}")]
    assert main(["train", "--run-dir", str(tmp_path / "run"), *overrides]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("atrous train: error: training labels of FolderDataset(root=") and "\n" not in err
    assert err.endswith("If 255 marks the foreground, set data.options.label_map={0: 0, 255: 1}")


# -- the validation split, by the same rules ------------------------------------------------


def _two_classes(i: int) -> np.ndarray:
    mask = np.zeros((6, 6), np.uint8)
    mask[1 + i % 3 : 4, 1:4] = 1
    return mask


def _all_ignore(i: int) -> np.ndarray:
    return np.full((6, 6), 255, np.uint8)


def test_validation_masks_all_ignore_stop_the_run_even_in_a_sample(tmp_path):
    train = _folder(tmp_path / "train", [_two_classes(i) for i in range(4)])
    val = _folder(tmp_path / "val", [_all_ignore(i) for i in range(10)])
    # All 4 sampled of 10: no rare class explains a mask without one labelled pixel.
    with pytest.raises(LabelError) as info:
        check_training_labels(train, val_set=val, sample=4)
    message = str(info.value)
    assert message.startswith(f"validation labels of {val!r}: in a sample of 4 of 10 masks, every pixel is 255")
    assert "mIoU is undefined) and no best model would be saved" in message and "\n" not in message
    # The training set alone is fine; without val_set nothing else is read.
    assert check_training_labels(train).present == [0, 1]


def test_validation_0_255_masks_stop_the_run_and_say_the_fix(tmp_path):
    # label_map on the training split only (data.train_options): validation still reads 255 as ignore.
    for i in range(3):
        make_pair(tmp_path / "train", f"{i:03d}", _binary(i))
    train = FolderDataset(tmp_path / "train", num_classes=2, label_map={0: 0, 255: 1})
    val = _folder(tmp_path / "val", [_binary(i) for i in range(3)])
    with pytest.raises(LabelError) as info:
        check_training_labels(train, val_set=val)
    message = str(info.value)
    assert message.startswith("validation labels of FolderDataset(") and "in all 3 masks, 3 hold only" in message
    assert "validation would score only class_0, a meaningless mIoU" in message
    assert message.endswith("set data.options.label_map={0: 0, 255: 1}")


def test_training_masks_all_ignore_stop_the_run_too(tmp_path):
    train = _folder(tmp_path, [_all_ignore(i) for i in range(10)])
    with pytest.raises(
        LabelError, match=r"^training labels of .*every pixel is 255 \(ignore\): there is nothing to learn"
    ):
        check_training_labels(train, sample=4)


def test_a_class_missing_from_the_validation_sample_is_a_warning(tmp_path, capsys):
    train = _folder(tmp_path / "train", [_two_classes(i) for i in range(3)])
    masks = [_two_classes(i) for i in range(6)]
    masks[0][:] = 0
    masks[5][:] = 0  # the sample of 2 reads masks 0 and 5: class 1 may be rare
    val = _folder(tmp_path / "val", masks)
    check_training_labels(train, val_set=val, sample=2)
    err = capsys.readouterr().err
    assert "warning: validation labels: class class_1 never appears in a sample of 2 of 6 masks" in err
    assert "validation never scores it" in err and "training labels" not in err
    check_training_labels(train, val_set=val, sample=2, quiet=True)
    assert capsys.readouterr().err == ""


def test_a_validation_split_that_is_the_training_split_is_not_read_twice(tmp_path, monkeypatch, capsys):
    masks = [np.zeros((4, 4), np.uint8) for _ in range(6)]
    train = _folder(tmp_path, masks)
    val = FolderDataset(tmp_path, num_classes=2)  # data.val_split == data.train_split
    read = []
    original = FolderDataset.read_raw_mask
    monkeypatch.setattr(FolderDataset, "read_raw_mask", lambda self, path: read.append(path) or original(self, path))
    check_training_labels(train, val_set=val, sample=3)
    assert len(read) == 3 and capsys.readouterr().err.count("warning:") == 1
    assert check_training_labels(SyntheticShapes(4), val_set=SyntheticShapes(4)) is None  # nothing to read


def test_validation_split_of_a_recipe_is_checked(tmp_path):
    from atrous.engine.tasks.semantic import build_datasets

    for i in range(3):
        make_pair(tmp_path / "data" / "train", f"{i:03d}", _two_classes(i))
        make_pair(tmp_path / "data" / "val", f"{i:03d}", _all_ignore(i))
    config = load_config(
        None, ["data.dataset=folder", f"data.root={tmp_path / 'data'}", "data.options={num_classes: 2}"]
    )
    train, val = build_datasets(config)
    with pytest.raises(LabelError, match=r"^validation labels of .*val.*in all 3 masks, every pixel is 255"):
        check_training_labels(train, val_set=val)


def test_the_trainer_checks_the_validation_split_before_building_the_model(tmp_path, monkeypatch):
    from atrous.engine import trainer as trainer_module
    from atrous.engine.tasks import semantic as semantic_task

    for i in range(3):
        make_pair(tmp_path / "data" / "train", f"{i:03d}", _two_classes(i))
        make_pair(tmp_path / "data" / "val", f"{i:03d}", _all_ignore(i))
    monkeypatch.setattr(semantic_task, "build_model", lambda *a: pytest.fail("built a model"))
    config = load_config(
        None,
        [
            "data.dataset=folder",
            f"data.root={tmp_path / 'data'}",
            "data.options={num_classes: 2}",
            "data.workers=0",
        ],
    )
    with pytest.raises(LabelError, match=r"^validation labels of .*no best model would be saved"):
        trainer_module.Trainer(config, tmp_path / "run")
