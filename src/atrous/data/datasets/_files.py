"""Finding image and mask files on disk and pairing them by name."""

from __future__ import annotations

from pathlib import Path

from ..errors import DatasetError, EmptyDatasetError, UnmatchedFilesError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
_MAX_LISTED = 5


def require_dir(path: Path, what: str) -> Path:
    """``path`` if it is a folder; otherwise a ``FileNotFoundError`` that names it and what it should hold."""
    if not path.is_dir():
        state = "is not a folder" if path.exists() else "does not exist"
        raise FileNotFoundError(f"{what} {path} {state}")
    return path


def index_files(folder: Path, *, suffix: str = "", extensions: tuple[str, ...] = IMAGE_EXTENSIONS) -> dict[str, Path]:
    """Image files under ``folder`` (recursively) by their key: the relative path without extension.

    ``suffix`` is removed from the end of the key when present (``"x_mask.png"`` with
    ``suffix="_mask"`` has key ``"x"``). Hidden files (``.DS_Store``, macOS ``._x.png``) are
    skipped.

    Raises:
        DatasetError: two files that differ only in extension (``a.png`` and ``a.jpg``).
    """
    files: dict[str, Path] = {}
    for path in sorted(folder.rglob("*")):
        if path.name.startswith(".") or path.suffix.lower() not in extensions or not path.is_file():
            continue
        key = path.relative_to(folder).with_suffix("").as_posix()
        if suffix and key.endswith(suffix):
            key = key[: -len(suffix)]
        if key in files:
            raise DatasetError(f"{files[key]} and {path} have the same name apart from the extension; keep one of them")
        files[key] = path
    return files


def pair_files(
    images: dict[str, Path], masks: dict[str, Path]
) -> tuple[list[tuple[Path, Path]], list[Path], list[Path]]:
    """``(pairs, images without a mask, masks without an image)``, each sorted by key."""
    pairs = [(images[key], masks[key]) for key in sorted(images) if key in masks]
    lonely_images = [images[key] for key in sorted(images) if key not in masks]
    lonely_masks = [masks[key] for key in sorted(masks) if key not in images]
    return pairs, lonely_images, lonely_masks


def _listing(paths: list[Path]) -> str:
    shown = ", ".join(p.name for p in paths[:_MAX_LISTED])
    more = f", … and {len(paths) - _MAX_LISTED} more" if len(paths) > _MAX_LISTED else ""
    return shown + more


def describe_unmatched(lonely_images: list[Path], lonely_masks: list[Path], image_dir: Path, mask_dir: Path) -> str:
    """``"2 images in X have no mask in Y (a.jpg, b.jpg); 1 mask in Y has no image in X (c.png)"``."""
    parts = []
    if lonely_images:
        n = len(lonely_images)
        parts.append(
            f"{n} image{'s' if n > 1 else ''} in {image_dir} without a mask in {mask_dir} ({_listing(lonely_images)})"
        )
    if lonely_masks:
        n = len(lonely_masks)
        parts.append(
            f"{n} mask{'s' if n > 1 else ''} in {mask_dir} without an image in {image_dir} ({_listing(lonely_masks)})"
        )
    return "; ".join(parts)


def strict_pairs(image_dir: Path, mask_dir: Path, what: str) -> list[tuple[Path, Path]]:
    """Every image in ``image_dir`` paired with its mask in ``mask_dir``, for datasets with a
    fixed layout where a file without its partner means a broken copy.

    Raises:
        EmptyDatasetError: no images.
        UnmatchedFilesError: an image without a mask or a mask without an image (listed).
    """
    images, masks = index_files(image_dir), index_files(mask_dir)
    if not images:
        raise EmptyDatasetError(f"no {what} images in {image_dir}")
    pairs, lonely_images, lonely_masks = pair_files(images, masks)
    if lonely_images or lonely_masks:
        raise UnmatchedFilesError(describe_unmatched(lonely_images, lonely_masks, image_dir, mask_dir))
    return pairs
