"""The dataset doctor: problems collected (never raised), suggestions, median-frequency weights."""

from __future__ import annotations

import numpy as np
import pytest
from tests.data.helpers import make_pair, random_rgb, real_data, save

from atrous.data import CamVid, FolderDataset, SyntheticShapes
from atrous.data.doctor import format_report, median_frequency_weights, scan_dataset


def test_median_frequency_weights_by_hand():
    # Two 2×2 masks: [0 0 0 1] and [0 0 2 2]; class 3 never appears.
    # freq0 = 5/8, freq1 = 1/4, freq2 = 2/4; median 1/2 -> weights 0.8, 2.0, 1.0, and 0 for class 3.
    assert median_frequency_weights([5, 1, 2, 0], [8, 4, 4, 0]) == pytest.approx([0.8, 2.0, 1.0, 0.0])
    assert median_frequency_weights([0, 0], [0, 0]) == [0.0, 0.0]


def test_scan_computes_the_same_weights(tmp_path):
    make_pair(tmp_path, "a", np.array([[0, 0], [0, 1]], np.uint8))
    make_pair(tmp_path, "b", np.array([[0, 0], [2, 2]], np.uint8))
    report = scan_dataset(FolderDataset(tmp_path, num_classes=4))
    assert report.class_weights == pytest.approx([0.8, 2.0, 1.0, 0.0])
    assert report.label_histogram == {0: 5, 1: 1, 2: 2}
    assert report.ok and report.num_read == 2
    assert any("never present: class_3" in tip for tip in report.suggestions)


def test_problems_are_collected_not_raised(tmp_path):
    binary = np.zeros((8, 8), np.uint8)
    binary[2:5, 2:5] = 255
    make_pair(tmp_path, "a_binary", binary)
    make_pair(tmp_path, "b_binary", binary[::-1].copy())
    make_pair(tmp_path, "c_out_of_range", np.array([[0, 1, 7, 7]] * 8, np.uint8), image_size=(8, 4))
    make_pair(tmp_path, "d_mismatch", np.zeros((6, 6), np.uint8), image_size=(8, 12))
    save(tmp_path / "images" / "e_broken.png", random_rgb(8, 8))
    (tmp_path / "masks" / "e_broken.png").write_bytes(b"\x89PNG not really")
    ds = FolderDataset(tmp_path, num_classes=3)
    report = scan_dataset(ds)
    names = lambda paths: [p.name for p in paths]  # noqa: E731
    assert report.num_samples == 5 and report.num_read == 4
    assert names(report.binary_masks) == ["a_binary.png", "b_binary.png"]
    assert list(report.out_of_range) == [7] and names(report.out_of_range[7]) == ["c_out_of_range.png"]
    [mismatch] = report.size_mismatches
    assert mismatch.mask.name == "d_mismatch.png" and mismatch.image_size == (8, 12) and mismatch.mask_size == (6, 6)
    [unreadable] = report.unreadable
    assert "e_broken.png is not an image" in unreadable
    assert report.label_histogram[255] == 2 * 9 and report.label_histogram[7] == 16
    assert report.image_sizes[(8, 8)] == 3 and report.most_common_size == (8, 8)
    assert report.min_size == (8, 4) and report.max_size == (8, 12)
    assert not report.ok
    tips = "\n".join(report.suggestions)
    assert "label_map={0: 0, 255: 1}" in tips and "resize_masks=True" in tips and "labels {7}" in tips
    text = format_report(report)
    for expected in ("c_out_of_range.png", "d_mismatch.png", "12×8", "6×6", "e_broken.png", "ignore", "OUT OF RANGE"):
        assert expected in text


def test_label_map_silences_the_binary_hint(tmp_path):
    make_pair(tmp_path, "a", np.array([[0, 255]], np.uint8))
    report = scan_dataset(FolderDataset(tmp_path, num_classes=2, label_map={0: 0, 255: 1}))
    assert report.binary_masks == [] and report.label_histogram == {0: 1, 1: 1}


def test_colour_masks_are_detected(tmp_path):
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[:2] = (128, 64, 128)
    make_pair(tmp_path, "a", rgb)
    report = scan_dataset(FolderDataset(tmp_path, num_classes=2))
    assert [p.name for p in report.color_masks] == ["a.png"]
    assert report.mask_colors == {(128, 64, 128): 8, (0, 0, 0): 8}
    assert any("color_map" in tip and "(128, 64, 128)" in tip for tip in report.suggestions)


def test_header_only_scan_and_non_file_datasets(tmp_path):
    make_pair(tmp_path, "a", np.zeros((5, 7), np.uint8))
    assert scan_dataset(FolderDataset(tmp_path, num_classes=2), check_images=False).image_sizes == {(5, 7): 1}
    with pytest.raises(TypeError, match="scan_dataset reads file datasets"):
        scan_dataset(SyntheticShapes(2))


def test_real_camvid_few_files():
    report = scan_dataset(CamVid(real_data("camvid"), "train"), limit=3)
    assert report.num_read == 3 and report.ok
    assert report.image_sizes == {(360, 480): 3}
    assert set(report.label_histogram) <= set(range(11)) | {255}


def _binary_dataset(root, count=3):
    for i in range(count):
        mask = np.zeros((6, 6), np.uint8)
        mask[1:4, 1:4] = 255
        make_pair(root, f"m{i}", mask)


def test_binary_masks_that_leave_one_class_are_a_problem(tmp_path):
    _binary_dataset(tmp_path)
    report = scan_dataset(FolderDataset(tmp_path, num_classes=2))
    assert report.loads and not report.ok  # every file loads, but nothing is left to learn
    assert "every foreground pixel would be ignored" in report.label_problem
    text = format_report(report)
    problems = text.split("Problems:")[1].split("Suggestions:")[0]
    assert "in all 3 masks, 3 hold only the values 0 and 255" in problems and "label_map={0: 0, 255: 1}" in problems
    assert text.count("label_map={0: 0, 255: 1}") == 1  # the problem says it; no second suggestion
    assert scan_dataset(FolderDataset(tmp_path, num_classes=2, label_map={0: 0, 255: 1})).ok


def test_one_class_in_every_mask_is_a_problem_and_resized_masks_are_not(tmp_path):
    make_pair(tmp_path / "one", "a", np.zeros((4, 4), np.uint8))
    report = scan_dataset(FolderDataset(tmp_path / "one", num_classes=2))
    assert not report.ok and "the dataset's masks (the only mask) hold only class_0" in report.label_problem
    make_pair(tmp_path / "resized", "a", np.array([[0, 1], [1, 0]], np.uint8), image_size=(4, 4))
    report = scan_dataset(FolderDataset(tmp_path / "resized", num_classes=2, resize_masks=True))
    assert report.ok and report.size_mismatches
    text = format_report(report)
    assert "Problems: none" in text and "(resized: resize_masks=True)" in text.split("Notes:")[1]


def test_doctor_exit_status_tells_scripts_about_problems(tmp_path, capsys):
    from atrous.cli import main

    _binary_dataset(tmp_path / "binary")
    assert main(["doctor", "folder", "--root", str(tmp_path / "binary"), "-o", "num_classes=2"]) == 3
    assert "Problems:\n  - in all 3 masks" in capsys.readouterr().out
    fixed = ["-o", "num_classes=2", "-o", "label_map={0: 0, 255: 1}"]
    assert main(["doctor", "folder", "--root", str(tmp_path / "binary"), *fixed]) == 0
    assert "Problems: none" in capsys.readouterr().out
    assert main(["doctor", "folder", "--root", str(tmp_path / "binary"), "-o", "num_class=2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("atrous doctor: error: dataset 'folder' has no option 'num_class'. Did you mean num_classes?")
    assert "\n" not in err
