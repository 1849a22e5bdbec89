"""Reproducible, resumable, rank-sharded sampling for training; unpadded sharding for evaluation.

Reproducibility rests on one idea: every training sample is identified by a *key*
``epoch · N + index``, and its random augmentation is drawn from a generator seeded by
``(seed, key)`` alone. So the data a step sees does not depend on the number of workers,
on the process it runs in, or on whether the run was stopped and resumed — which is what
makes ``--resume`` end with bit-identical weights.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch.utils.data import Dataset, Sampler

from ..utils.seeding import keyed_seed

PairTransform = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class KeyedAugmentation(Dataset):
    """Wraps a dataset; item ``key`` = sample ``key % N`` augmented with RNG seeded by (seed, key)."""

    def __init__(self, dataset: Dataset, transforms: PairTransform | None, seed: int) -> None:
        self.dataset = dataset
        self.transforms = transforms
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: int):
        image, mask = self.dataset[key % len(self)]
        if self.transforms is None:
            return image, mask
        # fork_rng: the global generator (dropout, the trainer's own draws) is left as it was.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(keyed_seed(self.seed, key))
            return self.transforms(image, mask)


class ResumableBatchSampler(Sampler[list[int]]):
    """An endless stream of batches of keys, shuffled per epoch, sharded across ranks.

    Epoch ``e`` is a permutation drawn from ``seed + e``; rank ``r`` of ``world_size``
    takes every ``world_size``-th index of it, trimmed so that all ranks have the same
    number of full batches (incomplete batches are dropped, as DeepLab training does).
    ``start_batch`` skips batches without loading them: resuming at step ``s`` costs
    nothing.
    """

    def __init__(
        self, num_samples: int, batch_size: int, *, seed: int, rank: int = 0, world_size: int = 1, start_batch: int = 0
    ) -> None:
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.start_batch = start_batch
        self.batches_per_epoch = (num_samples // world_size) // batch_size
        if self.batches_per_epoch < 1:
            raise ValueError(
                f"the training set has {num_samples} samples, fewer than one batch of {batch_size} "
                f"per process ({world_size} processes): lower data.batch_size or add data"
            )

    def __iter__(self) -> Iterator[list[int]]:
        batch = self.start_batch
        epoch, perm = -1, None
        per_rank = self.batches_per_epoch * self.batch_size
        while True:
            e, i = divmod(batch, self.batches_per_epoch)
            if e != epoch:
                g = torch.Generator().manual_seed(self.seed + e)
                perm = torch.randperm(self.num_samples, generator=g)[self.rank :: self.world_size][:per_rank]
                epoch = e
            chunk = perm[i * self.batch_size : (i + 1) * self.batch_size]  # type: ignore[index]
            yield [e * self.num_samples + int(k) for k in chunk]
            batch += 1

    def __len__(self) -> int:  # pragma: no cover - endless; DataLoader only asks when len() is called
        raise TypeError("ResumableBatchSampler is endless")


class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + world_size, …``: every sample exactly once over all ranks.

    Unlike ``DistributedSampler`` it does not pad with repeated samples, which would count
    those pixels twice in a dataset-level confusion matrix.
    """

    def __init__(self, num_samples: int, rank: int = 0, world_size: int = 1) -> None:
        self.indices = list(range(rank, num_samples, world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)
