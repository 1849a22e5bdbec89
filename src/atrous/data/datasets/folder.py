"""Your own data: a folder of images and a folder of masks with the same file names."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..constants import IGNORE_INDEX
from ..errors import EmptyDatasetError, MaskValueError, UnmatchedFilesError
from ..io import read_raw_mask
from ..labels import apply_label_map, check_color_map, check_label_map, colors_to_index
from ..palette import Color, palette_from_color_map, voc_palette
from ._files import IMAGE_EXTENSIONS, describe_unmatched, index_files, pair_files, require_dir
from .base import FileDataset, Transforms


def check_folder_options(
    *, images: Any, masks: Any, num_classes: Any, mask_suffix: Any, resize_masks: Any, allow_unmatched: Any
) -> None:
    """The folder dataset's plain options (``data.options`` in a config, ``-o`` of doctor) are of
    their types, or a ValueError naming the option: these come from YAML, not from code."""
    if num_classes is None:  # a keyword with no default would fail as "missing 1 required … argument"
        raise ValueError(
            "the folder dataset needs num_classes, the number of classes its masks hold: "
            "data.options.num_classes in a config, -o num_classes=N for atrous doctor"
        )
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"the folder dataset's num_classes must be a positive integer, got {num_classes!r}")
    for name, value in (("images", images), ("masks", masks), ("mask_suffix", mask_suffix)):
        if not isinstance(value, str):
            raise ValueError(f"the folder dataset's {name} must be text (a folder or file-name suffix), got {value!r}")
    for name, value in (("resize_masks", resize_masks), ("allow_unmatched", allow_unmatched)):
        if not isinstance(value, bool):
            raise ValueError(f"the folder dataset's {name} must be true or false, got {value!r}")


class FolderDataset(FileDataset):
    """Images in ``root/images``, masks in ``root/masks``, paired by file name.

    ``images/street/0001.jpg`` pairs with ``masks/street/0001.png``: the relative path
    without extension must match (extensions: .png .jpg .jpeg .bmp .tif .tiff, any case;
    subfolders are searched). Masks store one class index per pixel, 255 = ignore, unless
    ``color_map`` or ``label_map`` says otherwise.

    Args:
        root: the dataset folder.
        images: subfolder of ``root`` with the images.
        masks: subfolder of ``root`` with the masks.
        num_classes: number of classes.
        class_names: one per class; ``class_0``, ``class_1``, … if not given.
        palette: one ``(r, g, b)`` per class for overlays; from ``color_map`` or the VOC
            palette if not given.
        color_map: ``{(r, g, b): class_index}`` for masks that paint classes as colours;
            a colour not in the map is an error.
        label_map: ``{stored_value: class_index}`` for masks that store other values, such
            as ``{0: 0, 255: 1}`` for a 0/255 foreground mask; unlisted values are kept.
            Integers written as text (``{"255": 1}``) are accepted.
        mask_suffix: text after the image's name in a mask's name (``"_mask"`` pairs
            ``a.jpg`` with ``a_mask.png``).
        resize_masks: resize a mask whose size differs from its image's to the image by
            nearest neighbour, instead of raising ``SizeMismatchError``.
        allow_unmatched: skip images without a mask and masks without an image (they are
            kept in ``unmatched``) instead of raising ``UnmatchedFilesError``.
        transforms: ``(image, mask) -> (image, mask)``.

    Raises:
        ValueError: a ``label_map`` entry that is not ``stored value 0..65535: class`` (see
            :func:`~atrous.data.labels.check_label_map`), or a ``color_map`` class out of range.
        FileNotFoundError: ``root/images`` or ``root/masks`` is not a folder.
        EmptyDatasetError: no image files, or no image with a mask.
        UnmatchedFilesError: some files have no partner (and ``allow_unmatched`` is off).
    """

    _size_mismatch_hint = "; pass resize_masks=True to resize each mask to its image (nearest)"

    def __init__(
        self,
        root: str | Path,
        *,
        images: str = "images",
        masks: str = "masks",
        num_classes: int | None = None,  # required: checked by check_folder_options
        class_names: Sequence[str] | None = None,
        palette: Sequence[Color] | None = None,
        color_map: Mapping[tuple[int, int, int], int] | None = None,
        label_map: Mapping[int, int] | None = None,
        mask_suffix: str = "",
        resize_masks: bool = False,
        allow_unmatched: bool = False,
        transforms: Transforms | None = None,
    ) -> None:
        root = Path(root)
        if color_map is not None and label_map is not None:
            raise ValueError("pass color_map (colour masks) or label_map (value masks), not both")
        check_folder_options(
            images=images, masks=masks, num_classes=num_classes, mask_suffix=mask_suffix,
            resize_masks=resize_masks, allow_unmatched=allow_unmatched,
        )  # fmt: skip
        if color_map is not None:
            color_map = check_color_map(color_map, num_classes)
        if label_map is not None:
            # Before any file is read; keys written as text ({"255": 1}, as JSON or -o writes them) become integers.
            label_map = check_label_map(label_map, num_classes)
        image_dir = require_dir(root / images, "image folder")
        mask_dir = require_dir(root / masks, "mask folder")
        image_files = index_files(image_dir)
        mask_files = index_files(mask_dir, suffix=mask_suffix)
        if not image_files:
            raise EmptyDatasetError(f"no image files ({' '.join(IMAGE_EXTENSIONS)}) in {image_dir}")
        pairs, lonely_images, lonely_masks = pair_files(image_files, mask_files)
        unmatched = describe_unmatched(lonely_images, lonely_masks, image_dir, mask_dir)
        rule = "masks are matched to images by file name without extension"
        if mask_suffix:
            rule += f" plus {mask_suffix!r}"
        if not pairs:
            raise EmptyDatasetError(f"no image in {image_dir} has a mask in {mask_dir}: {unmatched} ({rule})")
        if unmatched and not allow_unmatched:
            raise UnmatchedFilesError(f"{unmatched}; {rule}; pass allow_unmatched=True to skip them")
        if palette is None:
            palette = palette_from_color_map(color_map, num_classes) if color_map else voc_palette(num_classes)
        super().__init__(
            pairs,
            root=root,
            num_classes=num_classes,
            class_names=list(class_names) if class_names is not None else [f"class_{i}" for i in range(num_classes)],
            palette=palette,
            transforms=transforms,
            resize_masks=resize_masks,
            unmatched=lonely_images + lonely_masks,
        )
        self.color_map = dict(color_map) if color_map is not None else None
        self.label_map = dict(label_map) if label_map is not None else None

    def read_raw_mask(self, path: Path) -> np.ndarray:
        """Stored values; always ``(H, W, 3)`` colours when the dataset has a ``color_map``."""
        return read_raw_mask(path, rgb=self.color_map is not None)

    def encode_mask(self, raw: np.ndarray, path: Path) -> np.ndarray:
        """Colours through ``color_map``, values through ``label_map``, or the values themselves.

        Raises:
            MaskValueError: a colour not in ``color_map``, or a colour mask without one.
        """
        if self.color_map is not None:
            return colors_to_index(raw, self.color_map, path)
        if raw.ndim == 3:
            raise MaskValueError(
                f"{path} is a colour (RGB) mask; pass color_map={{(r, g, b): class_index, ...}} to FolderDataset"
            )
        if self.label_map is not None:
            return apply_label_map(raw, self.label_map)
        return raw.astype(np.int64)

    def expected_labels(self) -> str:
        if self.label_map is not None:
            return f"0..{self.num_classes - 1} or {IGNORE_INDEX} after label_map {self.label_map}"
        return super().expected_labels()
