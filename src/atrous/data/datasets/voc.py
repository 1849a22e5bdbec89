"""PASCAL VOC 2012 segmentation, 20 object classes and background.

Everingham et al., "The PASCAL Visual Object Classes Challenge", IJCV 2010. The
``train_aug`` split adds the Semantic Boundaries Dataset's annotations (Hariharan et al.,
"Semantic contours from inverse detectors", ICCV 2011), the usual 10,582-image DeepLab
training set.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import EmptyDatasetError, UnmatchedFilesError
from ..palette import voc_palette
from .base import PublishedDataset

VOC_CLASSES = [
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
]  # fmt: skip
VOC_PALETTE = voc_palette(len(VOC_CLASSES))

SPLITS = ("train", "val", "trainval", "train_aug")
_MAX_LISTED = 5


def find_voc_root(root: Path) -> Path:
    """The ``VOC2012`` folder given it, ``VOCdevkit`` or the folder that holds ``VOCdevkit``."""
    for candidate in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
        if (candidate / "JPEGImages").is_dir():
            return candidate
    state = "does not exist" if not root.exists() else "holds no VOC2012/JPEGImages"
    raise FileNotFoundError(
        f"PASCAL VOC root {root} {state}; pass the folder that holds VOCdevkit/VOC2012/JPEGImages (or that folder)"
    )


def _read_ids(list_file: Path) -> list[str]:
    # Either one id per line ("2007_000032") or DeepLab's pair lists
    # ("/JPEGImages/2007_000032.jpg /SegmentationClassAug/2007_000032.png").
    return [Path(line.split()[0]).stem for line in list_file.read_text().splitlines() if line.strip()]


class VOCSegmentation(PublishedDataset):
    """PASCAL VOC 2012: ``JPEGImages/{id}.jpg`` with ``SegmentationClass/{id}.png``.

    Masks are palette PNGs whose indices are the classes (0 = background, 1..20 objects,
    :data:`VOC_CLASSES`) and 255 marks object borders and difficult regions, which are
    ignored. Ids come from ``ImageSets/Segmentation/{split}.txt``.

    ``split="train_aug"`` reads the SBD-augmented training set in its common pre-converted
    form (no ``.mat`` files, so no SciPy needed): masks in ``VOC2012/SegmentationClassAug/{id}.png``
    (single-channel class indices, 255 = ignore) and ids in ``train_aug.txt``, looked for in
    ``ImageSets/Segmentation/``, then ``VOC2012/``, then ``root``. Lines may hold an id or
    DeepLab's ``/JPEGImages/X.jpg /SegmentationClassAug/X.png`` pairs. The usual list
    already excludes the ``val`` images; evaluate on ``split="val"``.

    Args:
        root: ``VOC2012``, ``VOCdevkit`` or the folder that holds ``VOCdevkit``.
        split: ``"train"``, ``"val"``, ``"trainval"`` or ``"train_aug"``.
        transforms: ``(image, mask) -> (image, mask)``.

    Raises:
        FileNotFoundError: no ``VOC2012/JPEGImages`` under ``root``, or no list file.
        EmptyDatasetError: the list file is empty.
        UnmatchedFilesError: listed ids whose image or mask file is missing.
    """

    TITLE, CLASSES, PALETTE, SPLITS = "VOC", VOC_CLASSES, VOC_PALETTE, SPLITS

    def find_samples(self, root: Path, split: str) -> tuple[Path, list[tuple[Path, Path]]]:
        voc = find_voc_root(root)
        list_dir = voc / "ImageSets" / "Segmentation"
        if split == "train_aug":
            mask_dir = voc / "SegmentationClassAug"
            candidates = [list_dir / "train_aug.txt", voc / "train_aug.txt", root / "train_aug.txt"]
        else:
            mask_dir = voc / "SegmentationClass"
            candidates = [list_dir / f"{split}.txt"]
        list_file = next((c for c in candidates if c.is_file()), None)
        if list_file is None:
            raise FileNotFoundError(
                f"no VOC list file for split {split!r}: looked for {', '.join(map(str, candidates))}"
            )
        ids = _read_ids(list_file)
        if not ids:
            raise EmptyDatasetError(f"{list_file} lists no images")
        samples = [(voc / "JPEGImages" / f"{i}.jpg", mask_dir / f"{i}.png") for i in ids]
        missing = [p for pair in samples for p in pair if not p.is_file()]
        if missing:
            shown = ", ".join(str(p) for p in missing[:_MAX_LISTED])
            more = f", … and {len(missing) - _MAX_LISTED} more" if len(missing) > _MAX_LISTED else ""
            raise UnmatchedFilesError(f"{len(missing)} files listed in {list_file} do not exist: {shown}{more}")
        return voc, samples
