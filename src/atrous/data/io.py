"""Reading images and masks from files with Pillow, with errors that name the file.

Both readers decode the whole file (``Image.load()``), so a truncated file fails here,
on the CPU, rather than as a shape error inside a model. Both apply the file's EXIF
orientation with ``ImageOps.exif_transpose``: a photo taken in portrait stores its pixels
in landscape plus an orientation tag, and its mask must be read the same way, so each
file is turned upright by its own tag (a mask saved without a tag is taken as upright).

Images become ``uint8`` RGB whatever the file holds; masks keep their integer values.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageReadError, MaskValueError
from .labels import colors_to_index

# 16-bit (and 32-bit integer) single-channel modes; Pillow spells the byte order in the mode.
_WIDE_INT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
_EXIF_ORIENTATION = 0x0112


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise ImageReadError(f"{path} does not exist")
    if not path.is_file():
        raise ImageReadError(f"{path} is not a file")


def _bomb_error(path: Path, exc: Exception) -> ImageReadError:
    return ImageReadError(
        f"{path} is too large to decode safely ({exc}); if the file is trusted, raise the limit with "
        f"PIL.Image.MAX_IMAGE_PIXELS = <pixels> (currently {Image.MAX_IMAGE_PIXELS})"
    )


@contextmanager
def _pillow_errors(path: Path, failure: str) -> Iterator[None]:
    """Turn what Pillow raises while opening ``path`` into an :class:`ImageReadError` naming it.

    Pillow only *warns* between ``MAX_IMAGE_PIXELS`` and twice that; a dataset should not
    decode such a file silently, so the warning becomes an error like the one above it.
    ``failure`` completes the message for decoder errors (OSError, SyntaxError, …).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _bomb_error(path, exc) from exc
    except UnidentifiedImageError as exc:
        raise ImageReadError(f"{path} is not an image file that Pillow can read") from exc
    except Exception as exc:  # Pillow's decoders raise OSError, SyntaxError, ValueError, struct.error…
        raise ImageReadError(f"{path} {failure} ({exc})") from exc


def open_image(path: str | os.PathLike) -> Image.Image:
    """Open, fully decode and EXIF-orient an image file.

    Raises:
        ImageReadError: the file is missing; is not an image Pillow can identify (random
            bytes, a text file); cannot be decoded (truncated or corrupt); or has more
            pixels than ``PIL.Image.MAX_IMAGE_PIXELS`` (Pillow's decompression-bomb guard,
            whose warning is turned into this error as well as its error).
    """
    path = Path(path)
    _check_exists(path)
    with _pillow_errors(path, "could not be decoded, it may be truncated or corrupt"), Image.open(path) as image:
        image.load()  # decode now: a truncated file fails here, not later
        return ImageOps.exif_transpose(image)


def read_image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(height, width)`` of an image file after EXIF orientation, from its header only.

    Raises:
        ImageReadError: as :func:`open_image`, except that a truncated body is not noticed.
    """
    path = Path(path)
    _check_exists(path)
    with _pillow_errors(path, "could not be read"), Image.open(path) as image:
        width, height = image.size
        orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
    # Orientations 5-8 include a quarter turn, which swaps height and width.
    return (width, height) if orientation in (5, 6, 7, 8) else (height, width)


def _rgb_array(image: Image.Image) -> np.ndarray:
    if image.mode in _WIDE_INT_MODES:
        # A fixed scale (65535 -> 255), not per-image min/max stretching, so the same value
        # means the same brightness in every image of a dataset.
        values = np.clip(np.asarray(image).astype(np.int64), 0, 65535)
        gray = ((values + 128) // 257).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if image.mode != "RGB":
        image = image.convert("RGB")  # L -> 3 equal channels, RGBA/LA -> alpha dropped, P -> its palette colours
    return np.array(image)


def pil_to_rgb_array(image: Image.Image) -> np.ndarray:
    """An in-memory PIL image as ``uint8`` (H, W, 3), by :func:`read_image`'s rules (EXIF
    orientation applied, grayscale repeated, alpha dropped, 16-bit scaled)."""
    return _rgb_array(ImageOps.exif_transpose(image))


def read_image(path: str | os.PathLike) -> torch.Tensor:
    """Read an image file as a ``uint8`` tensor of shape ``(3, H, W)``.

    Whatever the file holds becomes 8-bit RGB: grayscale (``L``) is repeated to three
    channels; an alpha channel (``RGBA``, ``LA``, ``PA``) is dropped, not composited;
    palette images (``P``) take their palette colours; 16-bit images (``I;16``, and 32-bit
    integer ``I`` taken as 16-bit) are scaled by 255/65535 and rounded. EXIF orientation is
    applied first (see the module docstring).

    Raises:
        ImageReadError: see :func:`open_image`.
    """
    array = _rgb_array(open_image(path))  # (H, W, 3)
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def read_raw_mask(path: str | os.PathLike, *, rgb: bool = False) -> np.ndarray:
    """Read a mask file's stored values, before any mapping to classes.

    Returns an ``(H, W)`` integer array for single-channel masks: ``L`` values; palette
    (``P``) PNGs give their palette *indices* (PASCAL VOC's format), not the colours; 16-bit
    masks keep their values (``uint16``/``int32``, never rescaled); mode ``1`` gives 0/1.
    An RGB(A) mask whose three channels are equal is a grayscale mask saved as colour and
    gives one channel; other RGB(A) masks give ``(H, W, 3)`` ``uint8`` colours. Alpha is
    dropped. With ``rgb=True`` the result is always ``(H, W, 3)`` colours (palette masks
    are expanded through their palette, grayscale repeated), for masks that encode classes
    as colours. EXIF orientation is applied as for images.

    Raises:
        ImageReadError: see :func:`open_image`.
        MaskValueError: a floating-point mask (mode ``F``), a 16-bit mask read as colour,
            or a mode that holds no labels (such as CMYK).
    """
    path = Path(path)
    image = open_image(path)
    mode = image.mode
    if mode == "F":
        raise MaskValueError(f"{path} is a floating-point image (mode F); a mask must hold integer labels")
    if rgb:
        if mode in _WIDE_INT_MODES:
            raise MaskValueError(f"{path} is a {mode} (16-bit) image; a colour mask must be 8-bit RGB or palette")
        return np.array(image.convert("RGB"))
    if mode in ("L", "P") or mode in _WIDE_INT_MODES:
        return np.array(image)
    if mode == "1":
        return np.array(image).astype(np.uint8)
    if mode in ("LA", "PA"):
        return np.array(image)[..., 0]
    if mode in ("RGB", "RGBA", "RGBX"):
        colours = np.array(image)[..., :3]
        if (colours[..., 0] == colours[..., 1]).all() and (colours[..., 0] == colours[..., 2]).all():
            return np.ascontiguousarray(colours[..., 0])
        return colours
    raise MaskValueError(f"{path} has image mode {mode}, which holds no class labels; save masks as L, P or RGB")


def read_mask(path: str | os.PathLike, *, color_map: Mapping[tuple[int, int, int], int] | None = None) -> torch.Tensor:
    """Read a mask file as an ``int64`` tensor of shape ``(H, W)``.

    Values are those of :func:`read_raw_mask` (palette indices, 16-bit values kept). With
    ``color_map`` (``{(r, g, b): class_index}``) the mask is read as colours and each colour
    becomes its class index. No range check happens here; datasets check labels against
    their number of classes.

    Raises:
        ImageReadError: see :func:`open_image`.
        MaskValueError: a colour mask without ``color_map``; a colour not in ``color_map``
            (the message lists them with pixel counts); a mode that holds no labels.
    """
    path = Path(path)
    raw = read_raw_mask(path, rgb=color_map is not None)
    if color_map is not None:
        return torch.from_numpy(colors_to_index(raw, color_map, path))
    if raw.ndim == 3:
        raise MaskValueError(
            f"{path} is a colour (RGB) mask; pass color_map={{(r, g, b): class_index, ...}} "
            "to turn its colours into classes"
        )
    return torch.from_numpy(raw.astype(np.int64))
