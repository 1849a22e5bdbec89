"""What a task plugs into the training loop (:class:`atrous.engine.trainer.Trainer`).

The loop owns everything a run does whatever it predicts — signals, time budget, cadence,
resume with RNG state, atomic checkpoints, JSONL/TensorBoard logging, plots, precision,
DDP and gradient accumulation, best-model tracking — and asks the task, in this order:

1. :meth:`Task.build_data` — datasets, class names, the metadata saved with the model
   (before the model is built: a degenerate label set stops here and costs nothing);
2. :meth:`Task.build_model` and :meth:`Task.choose_precision`;
3. :meth:`Task.train_loader` / :meth:`Task.val_loader`;
4. every micro-batch: :meth:`Task.training_step` → a dict of named losses, ``"loss"`` the
   one that is back-propagated (each is logged);
5. every evaluation: :meth:`Task.evaluate` → a metrics dict holding :attr:`Task.score_name`,
   the number the best model is kept by.

In the manner of detectron2's ``TrainerBase.run_step`` with its hooks, but with the loop
kept as one readable linear ``run()``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ...config import Config
from ...runtime import PrecisionChoice, seed_worker
from ..distributed import DistInfo
from ..sampling import ResumableBatchSampler


class Task(ABC):
    """One kind of training (semantic or instance segmentation) for the loop.

    Attributes set by :meth:`build_data`: ``train_set``, ``val_set``, ``num_classes``,
    ``class_names``, ``metadata``.
    """

    #: The key of :meth:`evaluate`'s result that decides the best model (higher is better).
    score_name: str = "score"
    #: How the score is named to a person ("mIoU", "mask AP").
    score_label: str = "score"
    #: Whether DDP must look for parameters that get no gradient in a step.
    find_unused_parameters: bool = False

    def __init__(self, config: Config, device: torch.device, dist: DistInfo) -> None:
        self.config = config
        self.device = device
        self.dist = dist
        self.train_set: Any = None
        self.val_set: Any = None
        self.num_classes = 0
        self.class_names: list[str] = []
        self.metadata: dict[str, Any] = {}

    @abstractmethod
    def build_data(self) -> None:
        """Build (and check) the training and validation sets."""

    @abstractmethod
    def build_model(self, *, load_weights: bool) -> nn.Module:
        """The model of ``config.model``; ``load_weights=False`` skips ``model.checkpoint_path``
        (a resumed run's weights come from its checkpoint)."""

    @abstractmethod
    def choose_precision(self, model: nn.Module) -> PrecisionChoice:
        """``train.amp`` resolved for this model (``auto`` by timing its own training step)."""

    def prepare(self, model: nn.Module) -> None:
        """Task-specific set-up of the built model, once it is on its device (none by default)."""
        return

    @abstractmethod
    def train_loader(self, start_batch: int) -> DataLoader:
        """The training batches of this rank, resuming after ``start_batch`` batches."""

    def resumable_loader(self, dataset: Dataset, start_batch: int, **loader_kwargs: Any) -> DataLoader:
        """Training batches of ``dataset`` for this rank in the run's seeded order, starting
        after ``start_batch`` batches (:class:`~atrous.engine.sampling.ResumableBatchSampler`):
        a resumed run sees the batches a run that never stopped would have seen."""
        d, t = self.config.data, self.config.train
        sampler = ResumableBatchSampler(
            len(dataset),
            d.batch_size,
            seed=t.seed,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
            start_batch=start_batch,
        )
        return DataLoader(
            dataset,
            batch_sampler=sampler,
            num_workers=d.workers,
            worker_init_fn=seed_worker,
            generator=torch.Generator().manual_seed(t.seed),
            persistent_workers=d.workers > 0,
            **loader_kwargs,
        )

    @abstractmethod
    def val_loader(self) -> DataLoader:
        """The validation batches."""

    @abstractmethod
    def training_step(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        """Forward one micro-batch (already under autocast); named losses, ``"loss"`` the total."""

    @abstractmethod
    def evaluate(self, model: nn.Module, autocast_dtype: torch.dtype | None) -> dict[str, Any]:
        """Metrics of ``model`` on the validation set — the same on every rank — holding
        :attr:`score_name` (NaN when undefined)."""

    def write_artefacts(self, run_dir: Path) -> None:
        """Files an evaluation leaves beside the log (main rank only); none by default."""
        return

    def score_intervals(self) -> dict[str, Any] | None:
        """95 % intervals of the last evaluation's scores, for the model card; none by default."""
        return None
