"""Errors raised while reading a dataset, each naming the file and what is wrong with it.

All derive from :class:`DatasetError` (a ``ValueError``), so a caller can catch one class;
:mod:`atrous.data.doctor` catches them to collect problems instead of stopping at the first.
"""

from __future__ import annotations


class DatasetError(ValueError):
    """Base class of the data errors."""


class ImageReadError(DatasetError):
    """An image or mask file that is missing, not an image, truncated or too large to decode."""


class SizeMismatchError(DatasetError):
    """A mask whose height and width differ from its image's."""


class MaskValueError(DatasetError):
    """A mask with labels (or colours) that do not map to a class or to the ignore label."""


class EmptyDatasetError(DatasetError):
    """A dataset that finds no samples where it looks for them."""


class UnmatchedFilesError(DatasetError):
    """Images without a mask, or masks without an image, where every file should have a partner."""


class LabelError(DatasetError):
    """Masks whose labels leave fewer than two classes to learn, such as 0/255 masks whose 255
    (the foreground) stays "ignore" (:mod:`atrous.data.label_check`)."""
