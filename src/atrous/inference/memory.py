"""How much memory a model's forward pass needs, measured, and the tiles that fit a budget.

:func:`peak_activation_bytes` runs the model once on a small probe under a
``TorchDispatchMode`` that sees every tensor each operator creates, counts each storage
once while any tensor still refers to it, and records the largest total ever alive. That
is the forward pass's working memory (weights and the input excluded), measured on the
real operators rather than guessed from layer shapes, so skip connections that keep early
maps alive (U-Net, DeepLab v3+) are counted. It grows with the number of pixels; two
probes give the bytes per pixel and the fixed part, from which :func:`plan_tiles` picks
the largest tile (and the most tiles per batch) that fit.
"""

from __future__ import annotations

import math
import re
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

_UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 2**10, "kib": 2**10, "m": 2**20, "mb": 2**20, "mib": 2**20}
_UNITS |= {"g": 2**30, "gb": 2**30, "gib": 2**30, "t": 2**40, "tb": 2**40, "tib": 2**40}


def parse_bytes(value: int | float | str) -> int:
    """``2GiB``, ``512MB``, ``1.5G`` or a number of bytes → bytes (binary units throughout)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        number, unit = float(value), ""
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(value))
        if match is None or match.group(2).lower() not in _UNITS:
            raise ValueError(f"memory budget must look like 2GiB, 512MB or a number of bytes, got {value!r}")
        number, unit = float(match.group(1)), match.group(2).lower()
    result = int(number * _UNITS[unit])
    if result <= 0:
        raise ValueError(f"memory budget must be positive, got {value!r}")
    return result


class _LiveBytes(TorchDispatchMode):
    """Tracks the bytes of storages created inside the mode that are still referenced."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._refs: dict[int, list[int]] = {}  # storage key -> [bytes, live tensors]

    def _release(self, key: int) -> None:
        entry = self._refs.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            self.live -= entry[0]
            del self._refs[key]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in tree_flatten(out)[0]:
            if not isinstance(tensor, torch.Tensor) or tensor.device.type == "meta":
                continue
            storage = tensor.untyped_storage()
            nbytes = storage.nbytes()
            if nbytes == 0:
                continue
            key = storage.data_ptr()
            entry = self._refs.setdefault(key, [nbytes, 0])
            if entry[1] == 0:
                self.live += nbytes
                self.peak = max(self.peak, self.live)
            entry[1] += 1
            weakref.finalize(tensor, self._release, key)
        return out


def peak_activation_bytes(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> int:
    """The most bytes of tensors created by ``fn(x)`` alive at once (the output included)."""
    return peak_bytes_during(lambda: fn(x))


def peak_bytes_during(fn: Callable[[], object]) -> int:
    """The most bytes of tensors created by ``fn()`` alive at once (what it returns
    included; tensors that existed before, such as weights, excluded)."""
    tracker = _LiveBytes()
    with tracker:
        out = fn()
    del out
    return tracker.peak


@dataclass(frozen=True)
class MemoryModel:
    """Working memory of a forward pass: ``fixed + per_pixel · pixels`` bytes."""

    per_pixel: float
    fixed: float

    def bytes_for(self, pixels: int) -> float:
        return self.fixed + self.per_pixel * pixels


def measure_memory(fn: Callable[[torch.Tensor], torch.Tensor], example: torch.Tensor, sizes=(64, 128)) -> MemoryModel:
    """Fit :class:`MemoryModel` from two square probes (batch 1) shaped like ``example``."""
    small, large = sizes
    peaks = []
    for side in (small, large):
        probe = example.new_zeros((1, example.shape[1], side, side))
        peaks.append(peak_activation_bytes(fn, probe))
    per_pixel = max(0.0, (peaks[1] - peaks[0]) / (large**2 - small**2))
    fixed = max(0.0, peaks[0] - per_pixel * small**2)
    return MemoryModel(per_pixel=per_pixel, fixed=fixed)


@dataclass(frozen=True)
class TilePlan:
    tile: int  # window side in pixels
    batch: int  # windows per forward pass


def plan_tiles(
    memory: MemoryModel, budget: int, *, multiple: int = 32, min_tile: int = 64, max_tile: int = 1024
) -> TilePlan:
    """The largest square tile (a multiple of ``multiple``) whose forward pass fits ``budget``
    bytes, then as many such tiles per batch as fit. A safety factor of 1.25 covers the
    allocator's slack; a budget too small even for ``min_tile`` is an error."""
    usable = budget / 1.25
    side = int(math.sqrt(max(0.0, usable - memory.fixed) / max(memory.per_pixel, 1e-9)))
    side = min(max_tile, side - side % multiple)
    if side < min_tile:
        need = memory.bytes_for(min_tile**2) * 1.25
        raise MemoryError(
            f"a {min_tile}×{min_tile} tile needs about {format_bytes(need)} of working memory, more than "
            f"the {format_bytes(budget)} of the budget it may use; raise the memory budget"
        )
    per_tile = memory.per_pixel * side**2
    batch = max(1, int((usable - memory.fixed) // max(per_tile, 1.0)))
    return TilePlan(tile=side, batch=min(batch, 16))


def format_bytes(value: float) -> str:
    """``1.5 GiB``, ``258 MiB``, ``96 KiB``: small budgets must not read as "0 MiB"."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if value >= size:
            amount = value / size
            return f"{amount:.1f} {unit}" if amount < 10 else f"{amount:.0f} {unit}"
    return f"{value:.0f} B"
