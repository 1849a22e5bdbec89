"""Portrait mode on held-out humanseg photos, side by side: photo | the model's person mask | portrait.

    python scripts/portrait_gallery.py runs/humanseg -o /tmp/gallery            # the first three held out
    python scripts/portrait_gallery.py runs/humanseg -o /tmp/gallery --photos 3 7 12 --blur 30

Writes ``DIR/gallery.png`` (one row a photo, each column 320 px wide) and prints, per
photo, the person IoU of the model's mask (probability ≥ 0.5) against the photo's own
mask. The photos are taken in held-out order (the ``val`` split of ``atrous.data``'s
humanseg, numbered from 0), never chosen by how well they came out.

The humanseg photos carry no licence, and ``../shared/data`` may not be copied into the
repository, so the gallery is made on demand into a folder outside it, not committed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from atrous.cli.common import add_scale_flip_options, resolve_scales
from atrous.data.datasets.humanseg import HumanSeg
from atrous.data.root import resolve_root
from atrous.inference import load_trained_model, portrait
from atrous.inference.portrait import DEFAULT_BLUR, DEFAULT_INFERENCE_SIZE, subject_probability
from atrous.utils.atomic import atomic_write

COLUMN_WIDTH = 320
MASK_COLOUR = np.array([220, 20, 60], dtype=np.float32)  # the humanseg palette's person


def _overlay(rgb: np.ndarray, person: np.ndarray) -> np.ndarray:
    """The photo dimmed, the predicted person tinted: what the model found."""
    out = rgb.astype(np.float32) * 0.45
    out[person] = 0.5 * rgb[person] + 0.5 * MASK_COLOUR
    return out.clip(0, 255).astype(np.uint8)


def _fit(rgb: np.ndarray) -> Image.Image:
    image = Image.fromarray(rgb)
    height = round(image.height * COLUMN_WIDTH / image.width)
    return image.resize((COLUMN_WIDTH, height), Image.Resampling.BILINEAR)


def _grid(rows: list[list[np.ndarray]], gap: int = 4) -> Image.Image:
    tiles = [[_fit(t) for t in row] for row in rows]
    heights = [max(t.height for t in row) for row in tiles]
    columns = len(tiles[0])
    size = (columns * COLUMN_WIDTH + (columns - 1) * gap, sum(heights) + gap * (len(rows) - 1))
    sheet = Image.new("RGB", size, "white")
    top = 0
    for row, height in zip(tiles, heights, strict=True):
        for col, tile in enumerate(row):
            sheet.paste(tile, (col * (COLUMN_WIDTH + gap), top))
        top += height + gap
    return sheet


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a run folder, saved model folder or checkpoint of a person model")
    parser.add_argument("-o", "--out", type=Path, required=True, help="output folder (gallery.png; never overwritten)")
    parser.add_argument("--root", help="humanseg folder (default $ATROUS_DATA/humanseg)")
    parser.add_argument("--photos", type=int, nargs="+", default=[0, 1, 2], help="held-out indices (default 0 1 2)")
    parser.add_argument("--blur", type=float, default=DEFAULT_BLUR, help="background blur radius in px")
    parser.add_argument(
        "--inference-size",
        type=int,
        help=f"the shorter side the model sees (default: its data.base_size, else {DEFAULT_INFERENCE_SIZE})",
    )
    add_scale_flip_options(parser)  # as atrous portrait: --scales, --ms, --flip
    args = parser.parse_args(argv)
    try:
        scales = resolve_scales(args, [1.0])
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    target = args.out / "gallery.png"
    if target.exists():
        print(f"error: {target} already exists; choose another --out", file=sys.stderr)
        return 2
    root = resolve_root("humanseg", args.root)
    if root is None:
        print("error: no humanseg folder: pass --root or set ATROUS_DATA", file=sys.stderr)
        return 2
    held_out = HumanSeg(root, split="val")
    bad = [i for i in args.photos if not 0 <= i < len(held_out)]
    if bad:
        print(f"error: --photos {bad}: the held-out split has indices 0..{len(held_out) - 1}", file=sys.stderr)
        return 2

    model = load_trained_model(args.model)
    rows = []
    print("| held-out photo | file | person IoU |\n|---|---|---:|")
    for index in args.photos:
        image, truth = held_out.load(index)
        rgb = image.permute(1, 2, 0).numpy()
        with torch.inference_mode():
            # As `atrous portrait` runs it: the model's own base size unless --inference-size is given.
            given = {} if args.inference_size is None else {"inference_size": args.inference_size, "base_size": None}
            probability = subject_probability(rgb, model, scales=scales, flip=args.flip, **given).numpy()
        # The model runs once: portrait() treats a probability given as the mask as its own.
        result = portrait(rgb, mask=probability, blur=args.blur)
        person, true_person = probability >= 0.5, truth.numpy() == 1
        union = (person | true_person).sum()
        iou = (person & true_person).sum() / union if union else float("nan")
        print(f"| {index} | {held_out.samples[index][0].name} | {iou:.3f} |")
        rows.append([rgb, _overlay(rgb, person), result])

    args.out.mkdir(parents=True, exist_ok=True)
    sheet = _grid(rows)
    atomic_write(target, lambda temporary: sheet.save(temporary, format="PNG", optimize=True))
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
