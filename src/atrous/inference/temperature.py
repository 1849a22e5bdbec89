"""Temperature scaling (Guo et al. 2017, "On Calibration of Modern Neural Networks", §4.2):
the probabilities a model reports, softened or sharpened by one scalar ``T > 0`` fitted
after training, stored beside the model as ``temperature.json``.

The scores the prediction path gives are the model's logits ``z`` (one scale, no flip) or,
with test-time augmentation, softmax probabilities ``p`` averaged over scales and flips.
Both are scaled by one rule, ``softmax(log(p) / T)`` with ``p`` the path's probabilities
(``softmax(z)`` for logits). For logits this is exactly Guo et al.'s ``softmax(z / T)``
(``log softmax(z)`` is ``z`` minus a constant per pixel, which softmax ignores), and for
averaged probabilities it is the same one-parameter map, so one rule covers every setting
of ``atrous predict`` and ``atrous eval``. Dividing by ``T`` never changes which class
scores highest: labels are the same with or without a temperature.

``atrous eval RUN --report DIR --fit-temperature`` fits ``T`` (minimum negative
log-likelihood on the evaluated split, :func:`atrous.metrics.calibration.fit_temperature`)
and writes the file; :func:`atrous.inference.load_trained_model` reads it back as
``model.temperature`` and :class:`~atrous.inference.Predictor` applies it to the
probabilities it returns.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch

from ..utils.atomic import atomic_write_text

TEMPERATURE_NAME = "temperature.json"

# log(0) is -inf, and -inf / T stays -inf: a class with no probability keeps none, but the
# softmax of a row of -inf is NaN, so probabilities are floored first (far below float32's
# resolution near 1, so no pixel's top class moves).
_FLOOR = 1e-30


def scaled_probabilities(scores: torch.Tensor, *, logits: bool, temperature: float | None) -> torch.Tensor:
    """Class probabilities (dim 1) from the prediction path's ``scores``.

    Args:
        scores: (B, C, H, W) logits (``logits=True``) or probabilities.
        logits: whether ``scores`` are logits (one scale, no flip) or averaged probabilities.
        temperature: ``T``; ``None`` or 1 leaves the probabilities as the model gives them.
    """
    if temperature is None or temperature == 1.0:
        return scores.softmax(dim=1) if logits else scores
    if logits:
        return (scores / temperature).softmax(dim=1)
    return (scores.clamp_min(_FLOOR).log() / temperature).softmax(dim=1)


def check_temperature(value: Any, source: str) -> float:
    """``value`` as a finite positive float, or a ValueError naming ``source``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{source}: the temperature must be a finite number > 0, got {value!r}")
    return float(value)


def read_temperature(folder: str | os.PathLike) -> float | None:
    """The temperature stored in ``folder/temperature.json``, or ``None`` when there is none."""
    path = Path(folder) / TEMPERATURE_NAME
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path} cannot be read as JSON: {exc}") from exc
    if not isinstance(record, dict) or "temperature" not in record:
        raise ValueError(f"{path} has no 'temperature' key")
    return check_temperature(record["temperature"], str(path))


def write_temperature(folder: str | os.PathLike, temperature: float, details: dict[str, Any]) -> Path:
    """Write ``folder/temperature.json`` atomically: ``{"temperature": T, **details}``.

    The caller decides whether an existing file may be replaced (``atrous eval`` refuses
    one without ``--overwrite``); no other file of the folder is touched.
    """
    temperature = check_temperature(temperature, "write_temperature")
    record = {"temperature": temperature, "rule": "probabilities = softmax(log(p) / T)", **details}
    return atomic_write_text(Path(folder) / TEMPERATURE_NAME, json.dumps(record, indent=2) + "\n")
