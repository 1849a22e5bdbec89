"""The ISBI 2012 challenge's pixel error of a membrane model, as the U-Net paper's 0.0611 was scored.

    python scripts/isbi_pixel_error.py runs/unet_membrane_weightmap              # held-out sections 25–29
    python scripts/isbi_pixel_error.py runs/unet_membrane_weightmap --split train --json px.json

The challenge's "pixel error" is 1 − the maximal F-score of the cell class (label > 0) over
the thresholds 0.0, 0.1, …, 1.0 of the predicted cell probability, not 1 − pixel accuracy
(:mod:`atrous.metrics.isbi` says where that comes from). Prints, per threshold, the F-score
and the pixel accuracy, then the pixel error; ``--json`` writes the same (never over a file).

The model predicts each whole section in overlap tiles (``--tile``, default 388 as in
``configs/unet_membrane*.yaml``) in fp32, the weights as trained. The challenge scored its
own hidden test sections; these are sections of its training volume, held out here.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from atrous.data.datasets.membrane import ISBIMembrane
from atrous.data.root import resolve_root
from atrous.inference import Predictor, load_trained_model
from atrous.metrics.isbi import isbi_pixel_error
from atrous.utils.atomic import atomic_write_text

CELL = 1  # ISBIMembrane's class 1: label value 255, the challenge's positive pixels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a run folder, saved model folder or checkpoint of a membrane model")
    parser.add_argument("--root", help="membrane folder (default $ATROUS_DATA/membrane)")
    parser.add_argument("--split", default="val", choices=sorted(ISBIMembrane.SPLITS), help="sections (default val)")
    parser.add_argument("--tile", type=int, default=388, help="overlap-tile size in px (default 388)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file (never overwritten)")
    args = parser.parse_args(argv)
    if args.tile < 1:
        print(f"error: --tile must be a positive number of pixels, got {args.tile}", file=sys.stderr)
        return 2
    if args.json is not None and args.json.exists():
        print(f"error: --json {args.json} already exists; choose another file", file=sys.stderr)
        return 2
    root = resolve_root("membrane", args.root)
    if root is None:
        print("error: no membrane folder: pass --root or set ATROUS_DATA", file=sys.stderr)
        return 2
    sections = ISBIMembrane(root, split=args.split)

    model = load_trained_model(args.model)
    classes = list((getattr(model, "metadata", None) or {}).get("class_names") or [])
    if classes and classes[CELL : CELL + 1] != ["cell"]:
        print(f"error: {args.model} predicts {classes}, not ISBI membranes ([membrane, cell])", file=sys.stderr)
        return 2
    # base_size=None: sections are scored at their own 512×512; temperature 1: the probabilities
    # as the network gives them (a stored temperature would move the best threshold, not the labels).
    predictor = Predictor(model, tile=args.tile, precision="fp32", base_size=None, temperature=1.0)

    def pairs():
        for index in range(len(sections)):
            image, label = sections.load(index)
            probability = predictor(image, probabilities=True).probabilities
            yield probability[CELL], label.numpy() == CELL

    result = isbi_pixel_error(pairs())
    print(f"{len(sections)} sections ({args.split}), tiles {args.tile}, fp32\n")
    print("| threshold | F-score (cell) | pixel accuracy |\n|---:|---:|---:|")
    for t, f, a in zip(result.thresholds, result.f_scores, result.accuracies, strict=True):
        mark = " ←" if t == result.best_threshold else ""
        print(f"| {t:.1f} | {f:.4f}{mark} | {a:.4f} |")
    print(
        f"\npixel error (1 − maximal F-score, the challenge's measure): {result.pixel_error:.4f} "
        f"at threshold {result.best_threshold:.1f}; U-Net reported 0.0611 on the challenge's test sections"
    )
    if args.json is not None:
        record = {"model": str(args.model), "split": args.split, "tile": args.tile, **result.to_dict()}
        atomic_write_text(args.json, json.dumps(record, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
