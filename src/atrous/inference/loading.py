"""Finding a trained model on disk: a save_pretrained folder, a run folder or a checkpoint."""

from __future__ import annotations

import os
from pathlib import Path

from ..models import SegmentationModel, load_model, rebuild_model
from .temperature import read_temperature


def load_trained_model(path: str | os.PathLike) -> SegmentationModel:
    """Load for inference from any of:

    * a folder written by ``save_pretrained`` (``model.safetensors`` + ``config.json``);
    * a training run folder (its ``best/`` model);
    * a training checkpoint (``last.pt``), which records how its model was built (its weight
      average where the run kept one, ``train.ema``);
    * ``torchvision:NAME`` — torchvision's pretrained VOC-label segmentation weights
      (:func:`atrous.inference.torchvision_models.load_torchvision_model`).

    A model loaded from a folder carries ``model.temperature``: the temperature of the
    folder's ``temperature.json`` (:mod:`atrous.inference.temperature`), else ``None``.
    """
    from .torchvision_models import is_torchvision_spec, load_torchvision_model

    if is_torchvision_spec(path):
        return load_torchvision_model(str(path))
    path = Path(path)
    if path.is_dir():
        folder = model_folder(path)
        if folder is None:
            raise FileNotFoundError(f"{path} holds neither a saved model (config.json) nor a run's best/ model")
        model = load_model(folder)
        # A fitted temperature (temperature.json beside config.json) travels with the model:
        # Predictor scales the probabilities it returns by it.
        model.temperature = read_temperature(folder)
        return model
    if path.is_file():
        from ..utils.checkpoint_file import inference_weights, load_training_checkpoint

        checkpoint = load_training_checkpoint(path)
        return rebuild_model(
            checkpoint["model_config"],
            inference_weights(checkpoint),
            metadata=checkpoint.get("metadata", {}),
            source=str(path),
        )
    raise FileNotFoundError(f"model {path} does not exist")


def model_folder(path: str | os.PathLike) -> Path | None:
    """The folder whose ``config.json`` :func:`load_trained_model` reads for the folder
    ``path`` (``path`` itself, or a run's ``best/``), or ``None`` when it holds neither."""
    path = Path(path)
    for folder in (path, path / "best"):
        if (folder / "config.json").is_file():
            return folder
    return None


#: The folder inside a run where ``atrous quantize`` writes the int8 model.
INT8_FOLDER = "int8"


def load_inference_model(path: str | os.PathLike, precision: str = "auto"):
    """:func:`load_trained_model`, or the int8 model ``atrous quantize`` wrote: with
    ``precision="int8"`` (from ``RUN/int8``, or ``path`` itself when it is that folder),
    or when ``path`` is an int8 folder."""
    from .int8 import INFO_NAME as INT8_MARKER
    from .int8 import Int8Model

    folder = Path(path)
    if precision == "int8":
        if (folder / INT8_FOLDER / INT8_MARKER).is_file():
            folder = folder / INT8_FOLDER
        if not (folder / INT8_MARKER).is_file():
            raise FileNotFoundError(
                f"{path} has no int8 model ({INT8_FOLDER}/{INT8_MARKER}); write one with `atrous quantize {path}`"
            )
        return Int8Model.load(folder)
    if folder.is_dir() and (folder / INT8_MARKER).is_file():
        if precision not in ("auto", "int8"):
            raise ValueError(f"{path} is an int8 model; --precision {precision} does not apply to it")
        return Int8Model.load(folder)
    return load_trained_model(path)
