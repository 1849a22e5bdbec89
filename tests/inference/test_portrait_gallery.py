"""scripts/portrait_gallery.py: photo | mask | portrait for held-out humanseg photos, never over a file."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
from PIL import Image
from tests.helpers import save_tiny_segmenter

ROOT = Path(__file__).resolve().parents[2]


def _gallery_module():
    spec = importlib.util.spec_from_file_location("portrait_gallery", ROOT / "scripts" / "portrait_gallery.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _humanseg(root: Path, count: int) -> Path:
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir(parents=True)
    for n in range(1, count + 1):
        Image.fromarray(rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)).save(root / "images" / f"{n}.png")
        mask = np.zeros((32, 48), np.uint8)
        mask[8:28, 16:32] = 255
        Image.fromarray(mask).save(root / "masks" / f"{n}.png")
    return root


def test_gallery_rows_ious_and_refusals(tmp_path, capsys):
    gallery = _gallery_module()
    data = _humanseg(tmp_path / "humanseg", 253)  # 250 train, 3 held out
    model = save_tiny_segmenter(tmp_path / "model", ["background", "person"], [[0, 0, 0], [220, 20, 60]])
    out = tmp_path / "gallery"
    argv = [str(model), "-o", str(out), "--root", str(data), "--blur", "3"]
    assert gallery.main(argv) == 0
    printed = capsys.readouterr().out
    rows = [line for line in printed.splitlines() if line[:4] in ("| 0 ", "| 1 ", "| 2 ")]
    assert [row.split("|")[2].strip() for row in rows] == ["251.png", "252.png", "253.png"]
    assert all(0.0 <= float(row.split("|")[3]) <= 1.0 for row in rows)
    sheet = Image.open(out / "gallery.png")
    row_height = round(32 * gallery.COLUMN_WIDTH / 48)
    assert sheet.size == (3 * gallery.COLUMN_WIDTH + 2 * 4, 3 * row_height + 2 * 4)

    before = (out / "gallery.png").read_bytes()
    assert gallery.main(argv) == 2  # an existing gallery is never replaced
    assert (out / "gallery.png").read_bytes() == before
    assert "already exists" in capsys.readouterr().err
    assert gallery.main([str(model), "-o", str(tmp_path / "other"), "--root", str(data), "--photos", "3"]) == 2
    assert "indices 0..2" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()
    assert gallery.main([str(model), "-o", str(tmp_path / "other"), "--root", str(data), "--scales", "0"]) == 2
    assert "--scales must be positive" in capsys.readouterr().err
    # test-time flips and scales: the same rows, drawn from the averaged probabilities
    assert gallery.main([*argv[:2], str(tmp_path / "tta"), *argv[3:], "--flip", "--scales", "0.75", "1"]) == 0
    assert (tmp_path / "tta" / "gallery.png").exists() and "| 2 | 253.png |" in capsys.readouterr().out
