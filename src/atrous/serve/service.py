"""The model behind the service: loaded in the background, warmed with one prediction, then ready.

``/healthz`` answers from the first moment; ``/readyz`` only once :attr:`ModelService.ready`
is true, i.e. the model is loaded *and* one prediction has run (the first one pays for
the precision measurement, memory planning and lazy initialisation, not a user's request).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..inference.portrait import DEFAULT_BLUR, portrait, resolve_subject_class
from ..inference.predictor import Predictor
from ..inference.visualize import overlay

_WARM_UP_SIZE = (64, 64)


@dataclass
class Segmentation:
    labels: np.ndarray  # (H, W) class indices
    inference_ms: float


class ModelService:
    """Loads a model with ``loader`` and serves predictions from it.

    Args:
        loader: returns the segmentation model (e.g. ``load_inference_model(spec, precision)``).
        name: how ``/v1/model`` names it.
        device: where it runs.
        precision: as :class:`atrous.inference.Predictor` takes it.
        scales, flip: test-time augmentation (DeepLab v3 §4.3) for segmentation and portrait
            mode alike, as ``atrous eval``/``atrous portrait`` apply it: the class
            probabilities of every scale (and its mirror image) are averaged.
    """

    def __init__(
        self,
        loader: Callable[[], torch.nn.Module],
        *,
        name: str,
        device: str | torch.device = "cpu",
        precision="auto",
        scales: Sequence[float] = (1.0,),
        flip: bool = False,
    ) -> None:
        if not scales or not all(math.isfinite(s) and s > 0 for s in scales):
            raise ValueError(f"scales must be positive finite numbers, got {list(scales)}")
        self.loader = loader
        self.name = name
        self.device = torch.device(device)
        self.requested_precision = precision
        self.scales = tuple(float(s) for s in scales)
        self.flip = bool(flip)
        self.model: torch.nn.Module | None = None
        self.predictor: Predictor | None = None
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self.on_failure: Callable[[BaseException], None] | None = None  # e.g. stop the server

    # -- life cycle ------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    @property
    def loading(self) -> bool:
        """True while the background load (:meth:`start`) is still running."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Load and warm up on a background thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._load, name="atrous-serve-load", daemon=True)
            self._thread.start()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until ready (True), loading failed (raises it) or ``timeout`` passed (False)."""
        if self._thread is None:
            self.load()
        else:
            self._thread.join(timeout)
        if self.error is not None:
            raise self.error
        return self.ready

    def load(self) -> None:
        """Load and warm up on this thread."""
        model = self.loader()
        self.model = model
        self.predictor = Predictor(
            model, device=self.device, precision=self.requested_precision, scales=self.scales, flip=self.flip
        )
        self.predictor(np.zeros((*_WARM_UP_SIZE, 3), dtype=np.uint8))  # warm-up: one real prediction
        self._ready.set()

    def _load(self) -> None:
        try:
            self.load()
        except BaseException as exc:  # reported by wait_ready, /readyz and on_failure
            self.error = exc
            if self.on_failure is not None:
                self.on_failure(exc)

    # -- what the model is -----------------------------------------------------------------

    @property
    def class_names(self) -> list[str]:
        metadata = getattr(self.model, "metadata", None) or {}
        names = [str(n) for n in metadata.get("class_names") or []]
        count = self.num_classes
        return names if len(names) == count else [f"class {i}" for i in range(count)]

    @property
    def num_classes(self) -> int:
        assert self.predictor is not None
        return int(
            self.predictor.num_classes or len((getattr(self.model, "metadata", None) or {}).get("class_names", []))
        )

    @property
    def palette(self) -> list[list[int]]:
        from ..data.palette import default_palette

        assert self.predictor is not None
        colours = self.predictor.palette or default_palette(self.num_classes)
        return [[int(v) for v in c] for c in colours]

    def subject_default(self) -> str | None:
        """The class portrait mode keeps sharp by default, or None when the model has no default."""
        try:
            return self.class_names[resolve_subject_class(self.model)]  # type: ignore[arg-type]
        except ValueError:
            return None

    def describe(self) -> dict[str, Any]:
        assert self.predictor is not None
        return {
            "name": self.name,
            "task": "semantic",
            "classes": self.class_names,
            "palette": self.palette,
            "output_stride": self.predictor.output_stride,
            "base_size": self.predictor.base_size,  # the shorter side images are resized to for the network
            "precision": self.predictor.precision,
            "scales": list(self.scales),  # test-time augmentation, for segment and portrait alike
            "flip": self.flip,
            "subject_default": self.subject_default(),
        }

    # -- the work (called on worker threads) -----------------------------------------------

    def segment(self, rgb: np.ndarray) -> Segmentation:
        assert self.predictor is not None
        start = time.perf_counter()
        labels = self.predictor(rgb).labels
        return Segmentation(labels, (time.perf_counter() - start) * 1000)

    def overlay(self, rgb: np.ndarray, labels: np.ndarray, alpha: float) -> np.ndarray:
        return overlay(rgb, labels, self.palette, alpha)

    def portrait(self, rgb: np.ndarray, subject: str | None, blur: float = DEFAULT_BLUR) -> np.ndarray:
        """``atrous portrait``'s result for ``rgb`` (the same function, the precision already chosen)."""
        assert self.predictor is not None
        return portrait(
            rgb,
            model=self.model,
            subject_class=subject,
            blur=blur,
            device=self.device,
            precision=self.predictor.precision,
            scales=self.scales,
            flip=self.flip,
        )
