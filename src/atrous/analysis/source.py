"""The model to analyse: a registered name (random weights) or a trained model on disk.

The walk needs only the architecture, so it runs on a copy built on PyTorch's ``meta``
device (no memory, nothing computed, any input size in a fraction of a second). The
effective receptive field needs values: it uses the trained weights when there are
some, and a freshly initialised CPU copy for comparison.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..benchmark.model_table import build_model, table_num_classes
from ..models import create_model, is_model, model_from_config, model_task, task_of


@dataclass
class AnalysisModel:
    """A model as the analysis uses it (see the module docstring)."""

    name: str
    arch: nn.Module  # on meta: what the walk runs
    trained: nn.Module | None  # on the CPU, with trained weights; None for a registry name
    _fresh: Callable[[], nn.Module] | None = None

    @property
    def weight_kinds(self) -> list[str]:
        """The weights the effective fields are probed with: "trained", "random" or both."""
        return (["trained"] if self.trained is not None else []) + (["random"] if self._fresh is not None else [])

    def fresh(self, seed: int = 0) -> nn.Module | None:
        """The same architecture on the CPU with random (initial) weights, drawn from
        ``seed`` (the same weights every time, so that figures can be compared across
        output strides and runs; the global random state is left as it was)."""
        if self._fresh is None:
            return None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self._fresh()


def load_for_analysis(spec: str | os.PathLike) -> AnalysisModel:
    """``spec``: a registered model name (built as ``docs/models.md`` counts it: 21
    classes, 2 for the U-Nets) or what :func:`atrous.inference.load_trained_model` takes
    (a saved model folder, a run folder, a training checkpoint).

    Raises:
        ValueError: an instance model, or a name that is neither registered nor a path
            (with close names).
        FileNotFoundError: a path that does not exist.
    """
    text = str(spec)
    if is_model(text) and not Path(text).exists():
        if model_task(text) != "semantic":
            raise ValueError(f"MODEL {text} is an instance model; atrous analyze covers semantic segmentation models")
        return AnalysisModel(
            text,
            build_model(text, device="meta"),
            None,
            lambda: create_model(text, num_classes=table_num_classes(text)),
        )
    path = Path(text)
    if not path.exists():
        if os.sep in text or "/" in text or path.suffix:
            raise FileNotFoundError(f"MODEL {text}: no such file or folder, and not a registered model name")
        create_model(text)  # raises the registry's "unknown model … did you mean" error
    from ..inference.loading import load_trained_model

    trained = load_trained_model(path).eval()
    if task_of(trained) != "semantic":
        raise ValueError(f"MODEL {text} is an instance model; atrous analyze covers semantic segmentation models")
    config = getattr(trained, "config", None)
    if isinstance(config, dict) and "name" in config:

        def fresh() -> nn.Module:
            return model_from_config(config)

        with torch.device("meta"):
            arch = model_from_config(config)
    else:  # not built by atrous: no recipe to rebuild it from, so no random twin
        arch, fresh = copy.deepcopy(trained).to("meta"), None
    return AnalysisModel(text, arch, trained, fresh)
