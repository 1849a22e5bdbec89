"""Semantic segmentation in the training loop: per-pixel classes, a loss on the logits,
one dataset-level confusion matrix for evaluation, the best model by mIoU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ...config import Config
from ...data import build_dataset
from ...data.constants import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD
from ...data.copy_paste import CopyPasteDataset, resolve_classes
from ...data.palette import default_palette
from ...data.root import resolve_root
from ...data.transforms import eval_transforms, train_transforms
from ...data.weight_map import WeightMapDataset
from ...layers.tap_conv import use_tap_convs
from ...losses import SegmentationLoss, WeightedCrossEntropy, build_loss
from ...metrics import ConfusionMatrix
from ...metrics.bootstrap import bootstrap_iou
from ...models import SegmentationModel, create_model
from ...models.unet import center_crop
from ...runtime import PrecisionChoice
from ...utils.atomic import atomic_write
from .. import distributed as dist_utils
from ..amp import choose_training_precision, probe_shape, semantic_probe
from ..evaluator import evaluate
from ..sampling import KeyedAugmentation, ShardSampler
from .base import Task

CARD_RESAMPLES = 1000  # bootstrap resamples for the model card's intervals


def build_model(config: Config, num_classes: int, *, load_weights: bool = True) -> SegmentationModel:
    """The model of ``config.model``; ``load_weights=False`` skips ``model.checkpoint_path`` and
    ``model.pretrained_backbone`` (a resumed run's weights come from its checkpoint: a moved
    file or a download on an offline machine must not stop it)."""
    kwargs: dict[str, Any] = {"num_classes": num_classes}
    for key in ("output_stride", "multi_grid", "pretrained_backbone", "aux", "checkpoint_path"):
        value = getattr(config.model, key)
        if value is not None and (load_weights or key not in ("checkpoint_path", "pretrained_backbone")):
            kwargs[key] = value
    clash = sorted(set(config.model.options) & {*kwargs, "num_classes"})
    if clash:
        raise ValueError(f"model.options repeats {clash}; set them as model.<key> instead")
    return create_model(config.model.name, **kwargs, **config.model.options)


def build_eval_dataset(config: Config, split: str | None = None):
    """The evaluation set as training validates and ``atrous eval`` measures it (one definition)."""
    data = config.data
    split = split or data.val_split
    # The split's own options (a synthetic split's seed and size): the training split
    # evaluated is the one training saw.
    split_options = data.train_options if split == data.train_split else data.val_options
    return build_dataset(
        data.dataset,
        root=resolve_root(data.dataset, data.root),
        split=split,
        transforms=eval_transforms(mean=IMAGENET_MEAN, std=IMAGENET_STD),
        **{**data.options, **split_options},
    )


def build_datasets(config: Config):
    """(training set without augmentation, evaluation set) of ``config.data``."""
    data = config.data
    root = resolve_root(data.dataset, data.root)
    train_set = build_dataset(data.dataset, root=root, split=data.train_split, **{**data.options, **data.train_options})
    return train_set, build_eval_dataset(config)


def _save_npy(path: str, array: np.ndarray) -> None:
    with open(path, "wb") as f:  # np.save(name) would append .npy to the temporary name
        np.save(f, array)


class SemanticTask(Task):
    """Per-pixel classification: ``train.loss`` on the logits (U-Net's weight map when set),
    evaluated by one confusion matrix reduced over ranks."""

    score_name = "miou"
    score_label = "mIoU"

    def build_data(self) -> None:
        config = self.config
        self.train_set, self.val_set = build_datasets(config)
        from ...data.label_check import check_training_labels  # a sample of the masks: degenerate labels stop here

        check_training_labels(self.train_set, val_set=self.val_set, quiet=not self.dist.is_main)
        self.num_classes = config.model.num_classes or self.train_set.num_classes
        if self.num_classes != self.train_set.num_classes:
            raise ValueError(
                f"model.num_classes={self.num_classes} but dataset {config.data.dataset!r} has "
                f"{self.train_set.num_classes} classes"
            )
        self.class_names = list(getattr(self.train_set, "class_names", [str(i) for i in range(self.num_classes)]))
        palette = getattr(self.train_set, "palette", None) or default_palette(self.num_classes)
        # Saved with every model so that predict/eval can name and colour classes.
        self.metadata = {
            "dataset": config.data.dataset,
            "class_names": self.class_names,
            "palette": [list(map(int, c)) for c in palette],
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
        }
        if config.data.copy_paste is not None:  # names checked against this dataset's classes now, not in a worker
            self.copy_paste_classes = resolve_classes(config.data.copy_paste["classes"], self.class_names)
        if config.data.base_size is not None:
            # Predict, eval, portrait and serve show the network photos at this shorter side.
            self.metadata["base_size"] = int(config.data.base_size)
        self._matrix: ConfusionMatrix | None = None
        self._image_matrices: np.ndarray | None = None
        self._val_loader: DataLoader | None = None

    def build_model(self, *, load_weights: bool) -> nn.Module:
        return build_model(self.config, self.num_classes, load_weights=load_weights)

    def prepare(self, model: nn.Module) -> None:
        t = self.config.train
        if self.device.type == "cpu":
            # ASPP's large rates hit a slow oneDNN path in bf16; the tap form is timed
            # against it once per shape (same parameters, same state dict).
            use_tap_convs(model)
        aux_weight = t.aux_weight if t.aux_weight is not None else model.aux_weight
        if t.weight_map is not None:  # with train.loss=ce alone (a CROSS_CHECKS rule of atrous.config)
            criterion = SegmentationLoss(WeightedCrossEntropy(ignore_index=IGNORE_INDEX), aux_weight)
        else:
            criterion = build_loss(
                t.loss,
                num_classes=self.num_classes,
                ignore_index=IGNORE_INDEX,
                class_weights=t.class_weights,
                aux_weight=aux_weight,
                **t.loss_options,
            )
        self.criterion = criterion.to(self.device)
        # The unpadded U-Net trains as the paper does (§2): a crop of data.crop_size goes in,
        # the loss is taken on the smaller valid output, the mask's centre.
        self.valid_context = int(getattr(model, "context", 0))
        if self.valid_context:
            for side in self.config.data.crop_size:
                model.output_size(side)  # raises, naming the size, if the crop is not a valid input
            model.valid_output_in_training = True

    def choose_precision(self, model: nn.Module) -> PrecisionChoice:
        d, t = self.config.data, self.config.train
        shape = probe_shape(d.batch_size, *d.crop_size)
        probe = semantic_probe(shape, self.num_classes, self.device, channels_last=t.channels_last)
        return choose_training_precision(t.amp, self.device, model, probe, shape)

    def train_loader(self, start_batch: int) -> DataLoader:
        d, t = self.config.data, self.config.train
        transforms = train_transforms(
            d.crop_size,
            scale_range=tuple(d.scale_range),
            hflip=d.hflip,
            jitter=d.jitter,
            elastic=d.elastic,
            mirror_margin=self.valid_context,
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            base_size=d.base_size,
        )
        keyed: Dataset = KeyedAugmentation(self.train_set, transforms, seed=t.seed)
        if d.copy_paste is not None:
            # The donor crops are augmented on their own draws (another seed), as Simple
            # Copy-Paste jitters both images; pasted before the weight map, which follows the result.
            donors = KeyedAugmentation(self.train_set, transforms, seed=t.seed + 1)
            keyed = CopyPasteDataset(
                keyed, donors, probability=d.copy_paste["probability"], classes=self.copy_paste_classes, seed=t.seed
            )
        if t.weight_map is not None:
            # After augmentation, so the border weights follow the deformed, cropped mask.
            keyed = WeightMapDataset(keyed, ignore_index=IGNORE_INDEX, **t.weight_map)
        return self.resumable_loader(keyed, start_batch, pin_memory=self.device.type == "cuda")

    def val_loader(self) -> DataLoader:
        if self._val_loader is not None:
            return self._val_loader
        d = self.config.data
        self._val_loader = DataLoader(
            self.val_set,
            batch_size=d.val_batch_size,
            sampler=ShardSampler(len(self.val_set), self.dist.rank, self.dist.world_size),
            num_workers=d.workers,
            pin_memory=self.device.type == "cuda",
            # Its own generator: without one each pass draws its seed from the global RNG, which
            # dropout uses too, and a run resumed from a checkpoint written before an evaluation
            # would train on other draws than one that never stopped.
            generator=torch.Generator().manual_seed(0),
        )
        return self._val_loader

    def training_step(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        images, masks, *extra = batch  # extra: U-Net weight maps
        images = images.to(self.device, non_blocking=True)
        masks = masks.to(self.device, non_blocking=True)
        extra = [e.to(self.device, non_blocking=True) for e in extra]
        if self.config.train.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        outputs = model(images)
        out_size = (outputs["out"] if isinstance(outputs, dict) else outputs).shape[-2:]
        if out_size != masks.shape[-2:]:  # a valid-convolution output: supervise the centre
            masks, *extra = (center_crop(t, out_size) for t in (masks, *extra))
        return {"loss": self.criterion(outputs, masks, *extra)}

    def evaluate(self, model: nn.Module, autocast_dtype: torch.dtype | None) -> dict[str, Any]:
        per_image: list[np.ndarray] | None = [] if self._keeps_image_matrices() else None

        def keep_image_matrices(images, masks, scores, labels) -> None:
            assert per_image is not None
            c = self.num_classes
            for pred, target in zip(labels, masks, strict=True):
                valid = target != IGNORE_INDEX
                cells = target[valid].long() * c + pred[valid].long()
                per_image.append(torch.bincount(cells, minlength=c * c).reshape(c, c).cpu().numpy())

        self._matrix = evaluate(
            model,
            self.val_loader(),
            self.num_classes,
            device=self.device,
            autocast_dtype=autocast_dtype,
            progress=False,
            tile=self.config.eval.tile,
            tile_overlap=self.config.eval.tile_overlap,
            base_size=self.config.data.base_size,
            on_batch=keep_image_matrices if per_image is not None else None,
        )
        if per_image is not None:
            shards = dist_utils.all_gather_object(np.stack(per_image) if per_image else None)
            self._image_matrices = np.concatenate([s for s in shards if s is not None])
        return self._matrix.compute().as_dict(self.class_names)

    def _keeps_image_matrices(self) -> bool:
        # One C×C int64 matrix per validation image, for the bootstrap intervals of the model
        # card: kept while they take under 64 MiB (ADE20K's 2000 images × 150² would be 360).
        return len(self.val_set) * self.num_classes**2 * 8 <= 64 * 2**20

    def score_intervals(self) -> dict[str, Any] | None:
        """mIoU and per-class IoU intervals by the bootstrap over validation images
        (:func:`atrous.metrics.bootstrap.bootstrap_iou`, 1000 resamples, seed 0)."""
        if self._image_matrices is None or not len(self._image_matrices):
            return None
        intervals = bootstrap_iou(self._image_matrices, resamples=CARD_RESAMPLES, seed=0)

        def pair(interval) -> list[float | None]:
            return [interval.as_dict()["low"], interval.as_dict()["high"]]

        return {
            "miou": pair(intervals.miou),
            "per_class": {name: pair(i) for name, i in zip(self.class_names, intervals.iou, strict=True)},
            "resamples": CARD_RESAMPLES,
            "seed": 0,
        }

    def write_artefacts(self, run_dir: Path) -> None:
        if self._matrix is not None:
            array = self._matrix.matrix.cpu().numpy()
            atomic_write(run_dir / "confusion_matrix.npy", lambda tmp: _save_npy(tmp, array))
