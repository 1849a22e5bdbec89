"""The U-Net weight map's cells and distances as atrous computed them before scipy.ndimage:
hand-written NumPy (a vectorised union-find; the two separable passes of an exact
Euclidean distance transform carrying the two nearest distinct cells). Kept here, for the
tests only, as an independent implementation to check ``atrous.data.weight_map`` against.
"""

from __future__ import annotations

import numpy as np

_FAR = np.int32(2**30)


def connected_components(labels: np.ndarray) -> np.ndarray:
    """Number the 4-connected regions of equal non-zero value: int32 (H, W), 0 where ``labels`` is 0, else 1..n.

    Regions are numbered in raster order of their first pixel. A vectorised union-find:
    each round hooks the larger root of every still-split edge onto the smaller one, then
    compresses paths by pointer jumping; it needs a few rounds, not one per pixel of a
    region's diameter as label propagation would.
    """
    labels = np.asarray(labels)
    height, width = labels.shape
    foreground = labels != 0
    pixels = np.flatnonzero(foreground)
    out = np.zeros(labels.shape, dtype=np.int32)
    if pixels.size == 0:
        return out
    node = np.full(height * width, -1, dtype=np.int64)
    node[pixels] = np.arange(pixels.size)
    same_right = foreground[:, :-1] & foreground[:, 1:] & (labels[:, :-1] == labels[:, 1:])
    same_down = foreground[:-1, :] & foreground[1:, :] & (labels[:-1, :] == labels[1:, :])
    rows, cols = np.nonzero(same_right)
    right = rows * width + cols
    rows, cols = np.nonzero(same_down)
    down = rows * width + cols
    a = node[np.concatenate([right, down])]
    b = node[np.concatenate([right + 1, down + width])]
    parent = np.arange(pixels.size)
    while a.size:
        root_a, root_b = parent[a], parent[b]
        split = root_a != root_b
        # An edge whose ends share a root stays joined (roots only merge): drop it.
        a, b, root_a, root_b = a[split], b[split], root_a[split], root_b[split]
        if not a.size:
            break
        # parent[i] <= i always holds, so the forest never gets a cycle.
        np.minimum.at(parent, np.maximum(root_a, root_b), np.minimum(root_a, root_b))
        while True:
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped
    # A root is the smallest node of its region, i.e. its first pixel in raster order.
    _, ids = np.unique(parent, return_inverse=True)
    out.ravel()[pixels] = ids.astype(np.int32) + 1
    return out


def _merge_candidate(
    d1: np.ndarray, l1: np.ndarray, d2: np.ndarray, l2: np.ndarray, d: np.ndarray | int, label: np.ndarray
) -> None:
    """Fold the candidate (squared distance ``d``, cell ``label``) into the two nearest distinct cells, in place.

    Invariant: ``(d1, l1)`` is the nearest cell seen so far and ``(d2, l2)`` the nearest
    other one. ``label`` 0 (no cell) must come with ``d >= _FAR`` so it never wins.
    """
    same = label == l1
    first = d < d1
    first &= ~same
    second = d < d2
    second &= ~same
    second &= ~first
    # The old nearest becomes the second before it is overwritten.
    np.copyto(d2, d1, where=first)
    np.copyto(l2, l1, where=first)
    np.copyto(d2, d, where=second)
    np.copyto(l2, label, where=second)
    # Where neither ``same`` nor ``first`` holds, d >= d1, so the minimum is right everywhere.
    np.minimum(d1, d, out=d1)
    np.copyto(l1, label, where=first)


def two_nearest_cells(cells: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Squared Euclidean distances (int32 (H, W)) from each pixel to its nearest and second-nearest cell.

    ``cells`` numbers the cells (0 = no cell). Exact wherever the distance is at most
    ``radius``; beyond it the value is only known to exceed ``radius²`` (it may be any
    larger number, ``2**30`` when no cell was seen at all).

    The two separable passes of an exact Euclidean distance transform (Saito & Toriwaki
    1994; Meijster et al. 2000), carrying the two nearest *distinct* cells instead of one
    distance, and taking each 1-D minimum over the offsets ``|δ| <= radius`` only:

    1. down each column: the two nearest distinct cells within ``radius`` rows;
    2. along each row: ``min over δ of g(x + δ)² + δ²`` over those column candidates.

    Two per column suffice: if the second-nearest cell ``j`` of a pixel has its closest
    point in column ``x'`` but two other cells were nearer in that column, both would be
    nearer to the pixel than ``j`` — a contradiction.
    """
    height, width = cells.shape
    cells = cells.astype(np.int32, copy=False)
    g1 = np.full((height, width), _FAR, dtype=np.int32)
    a1 = np.zeros((height, width), dtype=np.int32)
    g2 = g1.copy()
    a2 = a1.copy()
    reach = min(radius, height - 1)
    padded = np.pad(cells, ((reach, reach), (0, 0)))
    # Offsets by increasing |δ|: the first cell a pixel meets is its nearest, the first
    # other one its second; later ones never beat them, so plain "fill if empty" suffices.
    for delta in sorted(range(-reach, reach + 1), key=abs):
        seen = padded[reach + delta : reach + delta + height]
        fill1 = (a1 == 0) & (seen != 0)
        fill2 = (a1 != 0) & (a2 == 0) & (seen != 0) & (seen != a1)
        d = np.int32(delta * delta)
        g1[fill1], a1[fill1] = d, seen[fill1]
        g2[fill2], a2[fill2] = d, seen[fill2]

    d1 = np.full((height, width), _FAR, dtype=np.int32)
    l1 = np.zeros((height, width), dtype=np.int32)
    d2 = d1.copy()
    l2 = l1.copy()
    reach = min(radius, width - 1)
    pad = ((0, 0), (reach, reach))
    g1, a1 = np.pad(g1, pad, constant_values=_FAR), np.pad(a1, pad)
    g2, a2 = np.pad(g2, pad, constant_values=_FAR), np.pad(a2, pad)
    for delta in range(-reach, reach + 1):
        window = slice(reach + delta, reach + delta + width)
        step = np.int32(delta * delta)
        _merge_candidate(d1, l1, d2, l2, g1[:, window] + step, a1[:, window])
        _merge_candidate(d1, l1, d2, l2, g2[:, window] + step, a2[:, window])
    return d1, d2
