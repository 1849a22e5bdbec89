"""The training loop: one process, one GPU, or many through torchrun (DDP).

Everything a run writes goes into its run folder:

    config.yaml        the resolved configuration
    metrics.jsonl      one JSON object per log step and per evaluation
    last.pt            the latest training checkpoint (``--resume`` continues from it)
    best/              the best model by validation mIoU (save_pretrained format)
    plots/             loss and mIoU curves, per-class IoU, normalised confusion matrix
    tensorboard/       when ``train.tensorboard`` is on
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ..config import Config, validate_config
from ..data import build_dataset
from ..data.constants import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD
from ..data.root import resolve_root
from ..data.transforms import eval_transforms, train_transforms
from ..data.weight_map import WeightMapDataset
from ..inference.visualize import default_palette
from ..layers.tap_conv import use_tap_convs
from ..losses import SegmentationLoss, WeightedCrossEntropy, build_loss
from ..metrics import ConfusionMatrix
from ..models import SegmentationModel, create_model
from ..models.unet import center_crop
from ..runtime import PrecisionChoice, resolve_device
from ..utils.atomic import atomic_write
from . import distributed as dist_utils
from .amp import choose_training_precision, probe_shape, semantic_probe
from .checkpoint import (
    BEST,
    LAST,
    RunLock,
    atomic_torch_save,
    check_resume,
    load_training_checkpoint,
    open_run,
    recorded_best,
    rng_state,
    set_rng_state,
)
from .evaluator import evaluate
from .metrics_log import LOG_NAME, rewind_log
from .optim import build_optimizer, build_scheduler
from .sampling import KeyedAugmentation, ResumableBatchSampler, ShardSampler


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept as it was."""


class TrainingInterrupted(RuntimeError):
    """SIGTERM or SIGINT arrived; a checkpoint was written at the step boundary."""

    def __init__(self, signum: int, checkpoint: Path) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}; resume with --resume from {checkpoint}")
        self.signum = signum
        self.checkpoint = checkpoint


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    best_miou: float
    last_metrics: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch; optionally turn on deterministic algorithms."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False


def _save_npy(path: str, array: np.ndarray) -> None:
    with open(path, "wb") as f:  # np.save(name) would append .npy to the temporary name
        np.save(f, array)


def _worker_init(worker_id: int) -> None:
    # torch gives each worker its own seed; derive Python's and NumPy's from it.
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


def build_model(config: Config, num_classes: int, *, load_weights: bool = True) -> SegmentationModel:
    """The model of ``config.model``; ``load_weights=False`` skips ``model.checkpoint_path``
    (a resumed run's weights come from its checkpoint)."""
    kwargs: dict[str, Any] = {"num_classes": num_classes}
    for key in ("output_stride", "multi_grid", "pretrained_backbone", "aux", "checkpoint_path"):
        value = getattr(config.model, key)
        if value is not None and (load_weights or key != "checkpoint_path"):
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
    data = config.data
    root = resolve_root(data.dataset, data.root)
    train_set = build_dataset(data.dataset, root=root, split=data.train_split, **{**data.options, **data.train_options})
    return train_set, build_eval_dataset(config)


class Trainer:
    """Builds everything from a :class:`Config` and runs the loop.

    Args:
        config: the resolved configuration.
        run_dir: the run folder (created).
        resume: continue from ``run_dir/last.pt`` (``True``) or from a given checkpoint;
            ``config`` may differ from the checkpoint's only where that does not change what is
            trained (:data:`atrous.config.RESUME_MAY_CHANGE`), else the resume is refused.
        callbacks: ``fn(trainer, step)`` called after every optimiser step.
    """

    def __init__(
        self,
        config: Config,
        run_dir: str | os.PathLike,
        *,
        resume: bool | str | os.PathLike = False,
        callbacks: list[Callable[[Trainer, int], None]] | None = None,
    ) -> None:
        # Every value checked as load_config checks it: a Config built in Python gets the same rules.
        self.config = validate_config(config)
        self.run_dir = Path(run_dir)
        self.callbacks = callbacks or []
        t = config.train
        self.device = resolve_device(t.device)
        self.dist = dist_utils.init_distributed(self.device)
        resume_path, checkpoint = open_run(
            self.run_dir, config, resume, world_size=self.dist.world_size, is_main=self.dist.is_main
        )
        seed_everything(t.seed + self.dist.rank, t.deterministic)

        self.train_set, self.val_set = build_datasets(config)
        from ..data.label_check import check_training_labels  # a sample of the masks: degenerate labels stop here

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

        # Resuming, the weights come from the checkpoint: model.checkpoint_path is not read again.
        model = build_model(config, self.num_classes, load_weights=checkpoint is None)
        self.model: SegmentationModel = model.to(self.device)
        if t.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        if self.device.type == "cpu":
            # ASPP's large rates hit a slow oneDNN path in bf16; the tap form is timed
            # against it once per shape (same parameters, same state dict).
            use_tap_convs(self.model)
        self.precision_choice = self._choose_precision()
        self.autocast_dtype = self.precision_choice.dtype
        self.aux_weight = t.aux_weight if t.aux_weight is not None else model.aux_weight
        if t.weight_map is not None:  # with train.loss=ce alone (a CROSS_CHECKS rule of atrous.config)
            self.criterion = SegmentationLoss(WeightedCrossEntropy(ignore_index=IGNORE_INDEX), self.aux_weight)
        else:
            self.criterion = build_loss(
                t.loss,
                num_classes=self.num_classes,
                ignore_index=IGNORE_INDEX,
                class_weights=t.class_weights,
                aux_weight=self.aux_weight,
                **t.loss_options,
            )
        self.criterion = self.criterion.to(self.device)
        self.optimizer = build_optimizer(
            model, t.optimizer, lr=t.lr, weight_decay=t.weight_decay, momentum=t.momentum, head_lr_mult=t.head_lr_mult
        )
        self.scheduler = build_scheduler(
            self.optimizer, t.steps, power=t.poly_power, warmup_steps=t.warmup_steps, warmup_ratio=t.warmup_ratio
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.autocast_dtype is torch.float16)
        self.step = 0
        self._saved_step = -1
        self.best_miou = -math.inf
        self.history: list[dict[str, Any]] = []

        if checkpoint is not None:
            self._load(resume_path, checkpoint)
            del checkpoint
            if self.dist.is_main:  # the steps after the checkpoint are trained (and logged) again
                self.history = rewind_log(self.run_dir, self.step)

        if self.dist.enabled:
            if t.sync_bn and self.device.type == "cuda":
                self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
            self.ddp: nn.Module = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        else:
            self.ddp = self.model

        # The unpadded U-Net trains as the paper does (§2): a crop of data.crop_size goes in,
        # the loss is taken on the smaller valid output, the mask's centre.
        self.valid_context = int(getattr(model, "context", 0))
        if self.valid_context:
            for side in config.data.crop_size:
                model.output_size(side)  # raises, naming the size, if the crop is not a valid input
            model.valid_output_in_training = True
        self.train_loader = self._train_loader()
        self.val_loader = self._val_loader()
        self._stop_signal: int | None = None
        self._log_file = None
        self._tb = None

    # -- precision ----------------------------------------------------------------------

    def _choose_precision(self) -> PrecisionChoice:
        """``train.amp`` resolved (``auto`` by timing this model's step here, see
        :mod:`atrous.engine.amp`); under DDP rank 0 decides for every rank."""
        d, t = self.config.data, self.config.train
        shape = probe_shape(d.batch_size, *d.crop_size)
        choice = None
        if self.dist.is_main:
            probe = semantic_probe(shape, self.num_classes, self.device, channels_last=t.channels_last)
            choice = choose_training_precision(t.amp, self.device, self.model, probe, shape)
        return dist_utils.broadcast_object(choice)

    # -- data ---------------------------------------------------------------------------

    def _train_loader(self) -> DataLoader:
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
        )
        keyed: Dataset = KeyedAugmentation(self.train_set, transforms, seed=t.seed)
        if t.weight_map is not None:
            # After augmentation, so the border weights follow the deformed, cropped mask.
            keyed = WeightMapDataset(keyed, ignore_index=IGNORE_INDEX, **t.weight_map)
        sampler = ResumableBatchSampler(
            len(keyed),
            d.batch_size,
            seed=t.seed,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
            start_batch=self.step * t.grad_accum,
        )
        return DataLoader(
            keyed,
            batch_sampler=sampler,
            num_workers=d.workers,
            pin_memory=self.device.type == "cuda",
            worker_init_fn=_worker_init,
            generator=torch.Generator().manual_seed(t.seed),
            persistent_workers=d.workers > 0,
        )

    def _val_loader(self) -> DataLoader:
        d = self.config.data
        return DataLoader(
            self.val_set,
            batch_size=d.val_batch_size,
            sampler=ShardSampler(len(self.val_set), self.dist.rank, self.dist.world_size),
            num_workers=d.workers,
            pin_memory=self.device.type == "cuda",
        )

    # -- checkpoints ---------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": self.step,
            "best_miou": self.best_miou,
            "precision": self.precision_choice.precision,
            "rng": rng_state(),
            "model_config": self.model.config,
            "metadata": self.metadata,
            "config": self.config.to_dict(),
            "world_size": self.dist.world_size,  # the batch a step sees: a resume must keep it
        }

    def save_checkpoint(self, name: str = LAST) -> Path:
        path = self.run_dir / name
        if self.dist.is_main:
            atomic_torch_save(self._state(), path)
        self._saved_step = self.step
        dist_utils.barrier()
        return path

    def _load(self, path: Path, checkpoint: dict[str, Any] | None = None) -> None:
        if checkpoint is None:
            checkpoint = load_training_checkpoint(path)
            check_resume(self.config, checkpoint, path, world_size=self.dist.world_size)
        from ..utils.state_dict import load_strict

        load_strict(self.model, checkpoint["model"], source=str(path))
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        recorded = checkpoint.get("precision")
        if self.config.train.amp in ("auto", True) and recorded and recorded != self.precision_choice.precision:
            # amp=auto resolves once per run: a resumed run keeps the precision it trained in.
            self.precision_choice = PrecisionChoice(recorded, "checkpoint")
            self.autocast_dtype = self.precision_choice.dtype
            self.scaler = torch.amp.GradScaler("cuda", enabled=self.autocast_dtype is torch.float16)
        if checkpoint.get("scaler"):
            self.scaler.load_state_dict(checkpoint["scaler"])
        self.step = int(checkpoint["step"])
        if path.resolve() == (self.run_dir / LAST).resolve():
            self._saved_step = self.step  # last.pt holds this step: no need to write it again
        # The checkpoint at a step is written before that step's evaluation: best.pt knows a better one.
        self.best_miou = max(float(checkpoint.get("best_miou", -math.inf)), recorded_best(path, self.step, "miou"))
        if "rng" in checkpoint:
            set_rng_state(checkpoint["rng"])
            if self.dist.enabled:  # each rank keeps its own stream, as in a run that never stopped
                torch.manual_seed(self.config.train.seed + self.dist.rank + self.step)

    # -- logging -------------------------------------------------------------------------

    def _record_precision(self) -> None:
        """``precision.json``: what ``train.amp`` resolved to and the figures behind it."""
        from dataclasses import asdict

        from ..utils.atomic import atomic_write_text

        choice = self.precision_choice
        record = {"amp": self.config.train.amp, "device": str(self.device), **asdict(choice)}
        atomic_write_text(self.run_dir / "precision.json", json.dumps(record, indent=2) + "\n")
        if self.config.train.progress:
            tqdm.write(f"train.amp={self.config.train.amp}: {choice.summary()}")

    def _log(self, record: dict[str, Any]) -> None:
        self.history.append(record)
        if not self.dist.is_main:
            return
        if self._log_file is None:
            self._log_file = open(self.run_dir / LOG_NAME, "a")  # noqa: SIM115 - closed in run()
        self._log_file.write(json.dumps(record) + "\n")
        self._log_file.flush()
        if self._tb is not None:
            for key, value in record.items():
                if isinstance(value, int | float) and key != "step":
                    self._tb.add_scalar(f"{record.get('kind', 'train')}/{key}", value, record["step"])

    # -- the loop ------------------------------------------------------------------------

    def _handle_signal(self, signum, frame) -> None:
        self._stop_signal = signum

    def _forward_backward(
        self, images: torch.Tensor, masks: torch.Tensor, extra: list[torch.Tensor], sync: bool
    ) -> torch.Tensor:
        amp = (
            torch.autocast(self.device.type, dtype=self.autocast_dtype)
            if self.autocast_dtype is not None
            else nullcontext()
        )
        no_sync = self.ddp.no_sync() if (self.dist.enabled and not sync) else nullcontext()  # type: ignore[operator]
        with no_sync:
            with amp:
                outputs = self.ddp(images)
                out_size = (outputs["out"] if isinstance(outputs, dict) else outputs).shape[-2:]
                if out_size != masks.shape[-2:]:  # a valid-convolution output: supervise the centre
                    masks, *extra = (center_crop(t, out_size) for t in (masks, *extra))
                loss = self.criterion(outputs, masks, *extra)
            self.scaler.scale(loss / self.config.train.grad_accum).backward()
        return loss.detach()

    def run(self) -> TrainResult:
        """Train to ``train.steps`` (or the time budget), holding the run folder's lock."""
        lock = RunLock(self.run_dir) if self.dist.is_main else None
        try:
            return self._run()
        finally:
            if lock is not None:
                lock.release()

    def _run(self) -> TrainResult:
        t = self.config.train
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.dist.is_main:
            self.config.save(self.run_dir / "config.yaml")
            self._record_precision()
            if t.tensorboard:
                try:
                    from torch.utils.tensorboard import SummaryWriter
                except ImportError as exc:
                    raise ValueError("train.tensorboard=true needs the tensorboard package installed") from exc
                self._tb = SummaryWriter(str(self.run_dir / "tensorboard"))
        previous = {s: signal.signal(s, self._handle_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        start_time = time.perf_counter()
        data_iter = iter(self.train_loader)
        progress = tqdm(
            total=t.steps,
            initial=self.step,
            desc="train",
            disable=not (t.progress and self.dist.is_main),
            dynamic_ncols=True,
        )
        self.ddp.train()
        try:
            if 0 < self.step < t.steps and self.step % t.eval_every == 0 and not self._evaluated(self.step):
                # Resumed from a checkpoint whose step's evaluation never finished (killed
                # during it): the step is evaluated now, as in a run that never stopped.
                self.evaluate_and_track()
            while self.step < t.steps:
                # One decision for all ranks (max over them): 2 = a signal arrived somewhere,
                # save and stop; 1 = the time budget is spent, finish normally; 0 = go on.
                timed_out = t.max_time_s is not None and time.perf_counter() - start_time > t.max_time_s
                action = 2.0 if self._stop_signal is not None else float(timed_out)
                action = dist_utils.all_reduce_max(action, self.device)
                if action == 2.0:
                    path = self.save_checkpoint(LAST)
                    raise TrainingInterrupted(self._stop_signal or signal.SIGTERM, path)
                if action == 1.0:
                    break
                losses = []
                for micro in range(t.grad_accum):
                    images, masks, *extra = next(data_iter)  # extra: U-Net weight maps
                    images = images.to(self.device, non_blocking=True)
                    masks = masks.to(self.device, non_blocking=True)
                    extra = [e.to(self.device, non_blocking=True) for e in extra]
                    if t.channels_last:
                        images = images.contiguous(memory_format=torch.channels_last)
                    losses.append(self._forward_backward(images, masks, extra, sync=micro == t.grad_accum - 1))
                loss = torch.stack(losses).mean()
                if not torch.isfinite(loss):
                    raise NonFiniteLossError(
                        f"loss is {loss.item()} at step {self.step + 1}; stopping. The last good checkpoint "
                        f"({self.run_dir / LAST}) was not overwritten. Try a lower train.lr or train.amp=off."
                    )
                if t.grad_clip is not None:
                    self.scaler.unscale_(self.optimizer)
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip)
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.optimizer.zero_grad(set_to_none=True)
                self.scheduler.step()
                self.step += 1
                progress.update(1)
                if self.step % t.log_every == 0 or self.step == t.steps:
                    loss_value = dist_utils.all_reduce_mean(loss).item()
                    lr = self.optimizer.param_groups[0]["lr"]
                    progress.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}")
                    self._log(
                        {
                            "kind": "train",
                            "step": self.step,
                            "loss": loss_value,
                            "lr": lr,
                            "time_s": round(time.perf_counter() - start_time, 2),
                        }
                    )
                # Checkpoint first: an evaluation that fails (out of memory on a large validation
                # image) then costs no training, and a resume evaluates that step again.
                if self.step % t.checkpoint_every == 0 or self.step == t.steps:
                    self.save_checkpoint(LAST)
                if self.step % t.eval_every == 0 or self.step == t.steps:
                    self.evaluate_and_track()
                for callback in self.callbacks:
                    callback(self, self.step)
            # Stopped by the time budget between evaluations (or resumed where the last
            # evaluation did not finish): save and evaluate where it ended.
            if self._saved_step != self.step:
                self.save_checkpoint(LAST)
            if not self._evaluated(self.step):
                self.evaluate_and_track()
        finally:
            progress.close()
            for s, handler in previous.items():
                signal.signal(s, handler)
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None
            if self._tb is not None:
                self._tb.close()
        if self.dist.is_main:
            from .plots import write_training_plots

            write_training_plots(self.run_dir, self.class_names)
        last_val = next((r for r in reversed(self.history) if r["kind"] == "val"), None)
        return TrainResult(self.run_dir, self.step, self.best_miou, last_val, self.history)

    def _evaluated(self, step: int) -> bool:
        """Whether the log holds the evaluation of ``step`` (a resumed run reads it back)."""
        return any(r.get("kind") == "val" and r.get("step") == step for r in self.history)

    def evaluate_and_track(self) -> dict[str, Any]:
        """Evaluate on the validation split, log, and keep the best model by mIoU."""
        dist_utils.broadcast_buffers(self.model)
        matrix: ConfusionMatrix = evaluate(
            self.model,
            self.val_loader,
            self.num_classes,
            device=self.device,
            autocast_dtype=self.autocast_dtype,
            progress=False,
            tile=self.config.eval.tile,
            tile_overlap=self.config.eval.tile_overlap,
        )
        metrics = matrix.compute()
        record = {"kind": "val", "step": self.step, **metrics.as_dict(self.class_names)}
        self._log(record)
        if self.dist.is_main:
            array = matrix.matrix.cpu().numpy()
            atomic_write(self.run_dir / "confusion_matrix.npy", lambda tmp: _save_npy(tmp, array))
        miou = metrics.miou if not math.isnan(metrics.miou) else -math.inf
        if miou > self.best_miou:
            self.best_miou = miou
            if self.dist.is_main:
                self.model.save_pretrained(self.run_dir / "best", metadata=self.metadata)
                atomic_torch_save({"step": self.step, "miou": miou}, self.run_dir / BEST)
        dist_utils.barrier()
        return record
