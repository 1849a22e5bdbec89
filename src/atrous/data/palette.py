"""Colour palettes for drawing label maps."""

from __future__ import annotations

from collections.abc import Mapping

Color = tuple[int, int, int]


def voc_palette(num_colors: int = 256) -> list[Color]:
    """The PASCAL VOC colour palette, extended to any length.

    Class ``i``'s colour spreads the bits of ``i`` over the high bits of the three channels
    (the VOC devkit's ``labelcolormap``), so neighbouring classes get distinct colours:
    0 black, 1 (128, 0, 0), 2 (0, 128, 0), 3 (128, 128, 0), …
    """
    colors = []
    for index in range(num_colors):
        r = g = b = 0
        c = index
        for shift in range(7, -1, -1):
            r |= ((c >> 0) & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        colors.append((r, g, b))
    return colors


def default_palette(num_classes: int) -> list[Color]:
    """Colours for a label map whose dataset or model names none: :func:`voc_palette`'s first ``num_classes``."""
    return voc_palette(num_classes)


def palette_from_color_map(color_map: Mapping[Color, int], num_classes: int) -> list[Color]:
    """One colour per class from a ``{colour: class}`` map (the first colour wins); gaps from :func:`voc_palette`."""
    palette = voc_palette(num_classes)
    seen: set[int] = set()
    for color, label in color_map.items():
        if 0 <= label < num_classes and label not in seen:
            palette[label] = tuple(int(v) for v in color)  # type: ignore[assignment]
            seen.add(label)
    return palette
