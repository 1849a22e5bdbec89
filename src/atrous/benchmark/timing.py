"""Wall-clock timing: warm-up, then several runs per function, interleaved.

Side-by-side comparisons run their contenders in turn (A, B, A, B, …) rather than all of
A and then all of B, so that a slow minute on a shared machine lands on both; the
median of each is reported.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping

import torch

MIN_REPEATS = 5


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved(
    functions: Mapping[str, Callable[[], object]],
    *,
    repeats: int = 10,
    warmup: int = 2,
    device: torch.device | str = "cpu",
) -> dict[str, list[float]]:
    """Seconds per call of each function: ``warmup`` untimed calls each, then ``repeats``
    timed rounds in which every function runs once, in turn."""
    if repeats < MIN_REPEATS:
        raise ValueError(f"repeats must be at least {MIN_REPEATS} (a median of fewer runs is noise), got {repeats}")
    if warmup < 1:
        raise ValueError(f"warmup must be at least 1 (the first call pays for allocation and tuning), got {warmup}")
    device = torch.device(device)
    for fn in functions.values():
        for _ in range(warmup):
            fn()
        _sync(device)
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, fn in functions.items():
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)
