"""Running a model on images: normalisation, device, multi-scale + flip, labels out."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..data.constants import IMAGENET_MEAN, IMAGENET_STD
from ..engine.evaluator import predict_probabilities


class Predictor:
    """Turns uint8 (3, H, W) images into (H, W) label maps with a trained model.

    Args:
        model: a segmentation model (put in eval mode here).
        device: where to run it.
        mean, std: the normalisation the model was trained with.
        scales, flip: test-time augmentation (DeepLab v3 §4.3).
        tile: predict in tiles of this size (:func:`atrous.inference.tiling.predict_tiled`).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        device: str | torch.device = "cpu",
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        scales: Sequence[float] = (1.0,),
        tile: int | None = None,
        flip: bool = False,
    ) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.mean = torch.tensor(mean, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=self.device).view(1, 3, 1, 1)
        self.scales = tuple(scales)
        self.tile = tile
        self.flip = flip

    @torch.inference_mode()
    def predict(self, image: torch.Tensor) -> torch.Tensor:
        if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(
                f"Predictor.predict expects a uint8 (3, H, W) image, got {image.dtype} {tuple(image.shape)}"
            )
        x = image.to(self.device).unsqueeze(0).float().div_(255)
        x = (x - self.mean) / self.std
        scores = predict_probabilities(self.model, x, scales=self.scales, flip=self.flip, tile=self.tile)
        return scores.argmax(dim=1)[0].cpu()
