"""Time the U-Net border weight map (U-Net §3, eq. 2) per training crop: scipy.ndimage
(atrous.data.weight_map) against the hand-written NumPy cells and distances it replaced
(tests/data/weight_map_reference.py), interleaved in one process on the same crops.

    python bench/weight_map.py [--crops 20] [--size 348]

Reads the ISBI membrane labels from $ATROUS_DATA/membrane (default ../shared/data).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.data.weight_map_reference: the implementation of before

from tests.data import weight_map_reference as reference  # noqa: E402

from atrous.data import weight_map  # noqa: E402


def crops(count: int, size: int, seed: int = 0) -> list[np.ndarray]:
    folder = Path(os.environ.get("ATROUS_DATA", ROOT.parent / "shared" / "data")) / "membrane" / "label"
    if not folder.is_dir():
        raise SystemExit(f"bench/weight_map.py: {folder} does not exist (set ATROUS_DATA)")
    labels = [(np.array(Image.open(p)) > 127).astype(np.int64) for p in sorted(folder.glob("*.png"))]
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        mask = labels[int(rng.integers(len(labels)))]
        y, x = (int(v) for v in rng.integers(0, np.array(mask.shape) - size + 1))
        out.append(mask[y : y + size, x : x + size])
    return out


def time_one(mask: np.ndarray, hand_written: bool) -> float:
    saved = weight_map.connected_components, weight_map.two_nearest_cells
    if hand_written:
        weight_map.connected_components, weight_map.two_nearest_cells = (
            reference.connected_components,
            reference.two_nearest_cells,
        )
    try:
        start = time.perf_counter()
        weight_map.unet_weight_map(mask)
        return time.perf_counter() - start
    finally:
        weight_map.connected_components, weight_map.two_nearest_cells = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crops", type=int, default=20)
    parser.add_argument("--size", type=int, default=348, help="crop side (the U-Net recipe's input tile)")
    args = parser.parse_args()
    times: dict[bool, list[float]] = {True: [], False: []}
    for mask in crops(args.crops, args.size):
        for hand_written in (True, False):  # interleaved: both see the same machine state
            times[hand_written].append(time_one(mask, hand_written))
    before, after = statistics.median(times[True]), statistics.median(times[False])
    print(f"| weight map of a {args.size}×{args.size} membrane crop | median of {args.crops} |")
    print("|---|---|")
    print(f"| hand-written NumPy (before) | {before * 1000:.1f} ms |")
    print(f"| scipy.ndimage (after) | {after * 1000:.1f} ms |")
    print(f"| speed-up | {before / after:.1f}× |")


if __name__ == "__main__":
    main()
