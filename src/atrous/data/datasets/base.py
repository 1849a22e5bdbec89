"""The shared base of datasets that read image and mask files.

A file dataset is a list of ``(image_path, mask_path)`` pairs plus two steps that turn a
mask file into class indices: :meth:`FileDataset.read_raw_mask` (the stored values) and
:meth:`FileDataset.encode_mask` (values → classes). Keeping them apart lets
:mod:`atrous.data.doctor` look at the raw values of every file without raising, while
``__getitem__`` checks every mask on the CPU before a model (or CUDA) ever sees it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch.utils.data import Dataset

from ..constants import IGNORE_INDEX
from ..errors import EmptyDatasetError, MaskValueError, SizeMismatchError
from ..io import read_image, read_raw_mask
from ..labels import format_values, invalid_labels
from ..palette import Color

Transforms = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def resize_nearest(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize the first two axes of ``array`` to ``size = (H, W)`` by nearest neighbour.

    Pixel centres are aligned (PyTorch's ``nearest-exact``, Pillow's ``NEAREST``): output
    pixel ``i`` takes input pixel ``floor((i + 0.5) * in / out)``.
    """
    (h_in, w_in), (h_out, w_out) = array.shape[:2], size
    rows = np.minimum(((np.arange(h_out) + 0.5) * h_in / h_out).astype(np.int64), h_in - 1)
    cols = np.minimum(((np.arange(w_out) + 0.5) * w_in / w_out).astype(np.int64), w_in - 1)
    return array[rows[:, None], cols[None, :]]


def size_mismatch_message(
    image_path: Path, image_size: tuple[int, int], mask_path: Path, mask_size: tuple[int, int]
) -> str:
    """The message of a :class:`SizeMismatchError`; sizes are ``(H, W)`` and shown as ``W×H``."""
    (h, w), (mh, mw) = image_size, mask_size
    message = f"image {image_path} is {w}×{h} (width×height) but its mask {mask_path} is {mw}×{mh}"
    if (mh, mw) == (w, h):
        message += (
            "; the sizes are transposed, so one of the files may carry an EXIF orientation tag "
            "that the other lacks (both are read upright by their own tag)"
        )
    return message


class SegmentationDataset(Dataset):
    """What every atrous dataset shares: ``load(i)`` gives the decoded, checked pair and
    ``__getitem__`` applies ``self.transforms`` to it."""

    transforms: Transforms | None = None

    def load(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.load(index)
        if self.transforms is not None:
            image, mask = self.transforms(image, mask)
        return image, mask


class FileDataset(SegmentationDataset):
    """Image/mask file pairs → ``(image uint8 (3, H, W), mask int64 (H, W))``, then ``transforms``.

    Subclasses find their files, pass them as ``samples`` and override :meth:`encode_mask`
    (and :meth:`expected_labels`) when their files store something other than class indices.

    Args:
        samples: ``(image_path, mask_path)`` pairs, in a fixed order.
        root: the dataset folder, for messages and reports.
        num_classes: classes ``0..num_classes-1``; ``IGNORE_INDEX`` (255) marks pixels to
            ignore, so at most 255 classes.
        class_names: one name per class.
        palette: one ``(r, g, b)`` per class, for colour overlays.
        transforms: ``(image, mask) -> (image, mask)``, applied after decoding and checking.
        resize_masks: resize a mask whose size differs from its image's to the image (nearest)
            instead of raising :class:`SizeMismatchError`.
        unmatched: files that were found but left out for lack of a partner (reported by the doctor).

    Raises:
        EmptyDatasetError: ``samples`` is empty.
    """

    # Appended to size-mismatch messages by datasets that offer ``resize_masks``.
    _size_mismatch_hint = ""

    def __init__(
        self,
        samples: Sequence[tuple[Path, Path]],
        *,
        root: Path,
        num_classes: int,
        class_names: Sequence[str],
        palette: Sequence[Color],
        transforms: Transforms | None = None,
        resize_masks: bool = False,
        unmatched: Sequence[Path] = (),
    ) -> None:
        if not 1 <= num_classes <= IGNORE_INDEX:
            raise ValueError(
                f"num_classes must be 1..{IGNORE_INDEX} ({IGNORE_INDEX} is the ignore label); got {num_classes}"
            )
        if len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class names for {num_classes} classes")
        if len(palette) < num_classes:
            raise ValueError(f"{len(palette)} palette colours for {num_classes} classes")
        if not samples:
            raise EmptyDatasetError(f"{type(self).__name__} found no image/mask pairs in {root}")
        self.root = Path(root)
        self.samples = [(Path(i), Path(m)) for i, m in samples]
        self.num_classes = num_classes
        self.class_names = list(class_names)
        self.palette = [tuple(int(v) for v in c) for c in palette[:num_classes]]
        self.transforms = transforms
        self.resize_masks = resize_masks
        self.unmatched = [Path(p) for p in unmatched]

    def __len__(self) -> int:
        return len(self.samples)

    def read_raw_mask(self, path: Path) -> np.ndarray:
        """A mask file's stored values: ``(H, W)`` integers, or ``(H, W, 3)`` colours."""
        return read_raw_mask(path)

    def encode_mask(self, raw: np.ndarray, path: Path) -> np.ndarray:
        """Stored values → ``int64`` class indices ``(H, W)``; here the values are the classes.

        Raises:
            MaskValueError: a colour mask, which this dataset cannot map to classes.
        """
        if raw.ndim == 3:
            raise MaskValueError(f"{path} is a colour (RGB) mask; {type(self).__name__} expects one label per pixel")
        return raw.astype(np.int64)

    def expected_labels(self) -> str:
        """The stored values this dataset accepts, in words, for error messages."""
        return f"0..{self.num_classes - 1} or {IGNORE_INDEX}"

    def check_labels(self, mask: np.ndarray, raw: np.ndarray, path: Path) -> None:
        """Raise :class:`MaskValueError` if ``mask`` holds labels that are neither classes nor ignore.

        The message names the *stored* values (what is in the file), not the mapped ones.
        """
        bad = invalid_labels(mask, self.num_classes)
        if bad.any():
            values = raw[bad] if raw.shape == mask.shape else mask[bad]
            raise MaskValueError(
                f"{path} has labels {format_values(np.unique(values))}; expected {self.expected_labels()}"
            )

    def load(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample ``index`` decoded and checked, before ``transforms``.

        Raises:
            ImageReadError: an image or mask file that cannot be read.
            SizeMismatchError: mask and image sizes differ (and ``resize_masks`` is off).
            MaskValueError: labels outside the classes and the ignore label.
        """
        image_path, mask_path = self.samples[index]
        image = read_image(image_path)  # (3, H, W) uint8
        raw = self.read_raw_mask(mask_path)  # (H, W) or (H, W, 3)
        image_size = (int(image.shape[1]), int(image.shape[2]))
        if raw.shape[:2] != image_size:
            if not self.resize_masks:
                message = size_mismatch_message(image_path, image_size, mask_path, raw.shape[:2])
                raise SizeMismatchError(message + self._size_mismatch_hint)
            raw = resize_nearest(raw, image_size)
        mask = self.encode_mask(raw, mask_path)
        self.check_labels(mask, raw, mask_path)
        return image, torch.from_numpy(np.ascontiguousarray(mask, dtype=np.int64))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, samples={len(self)}, num_classes={self.num_classes})"


class PublishedDataset(FileDataset):
    """A published benchmark: a fixed folder layout, fixed classes and named splits.

    Subclasses set :attr:`TITLE`, :attr:`CLASSES`, :attr:`PALETTE` and :attr:`SPLITS` and
    implement :meth:`find_samples`; the split check and the rest of the construction are
    shared.

    Args:
        root: the dataset folder (what each dataset accepts is in its docstring).
        split: one of :attr:`SPLITS`.
        transforms: ``(image, mask) -> (image, mask)``.
    """

    TITLE: ClassVar[str]  # for messages: "CamVid split must be one of …"
    CLASSES: ClassVar[Sequence[str]]
    PALETTE: ClassVar[Sequence[Color]]
    SPLITS: ClassVar[Collection[str]]
    RESIZE_MASKS: ClassVar[bool] = False  # masks made at another size than their image: resized (nearest)

    def __init__(self, root: str | Path, split: str = "train", *, transforms: Transforms | None = None) -> None:
        if split not in self.SPLITS:
            raise ValueError(f"{self.TITLE} split must be one of {tuple(self.SPLITS)}; got {split!r}")
        root, samples = self.find_samples(Path(root), split)
        super().__init__(
            samples,
            root=root,
            num_classes=len(self.CLASSES),
            class_names=self.CLASSES,
            palette=self.PALETTE,
            transforms=transforms,
            resize_masks=self.RESIZE_MASKS,
        )
        self.split = split

    def find_samples(self, root: Path, split: str) -> tuple[Path, list[tuple[Path, Path]]]:
        """The dataset's folder (``root`` or one found below it) and the split's
        ``(image, mask)`` pairs, in a fixed order.

        Raises:
            FileNotFoundError: a folder or list file of the layout is missing.
            EmptyDatasetError, UnmatchedFilesError: no images, or files without a partner.
        """
        raise NotImplementedError
