"""Reading weight files and loading them strictly.

One place decides how a file becomes a state dict (safetensors, or ``torch.load`` with
``weights_only=True`` — never an unchecked pickle) and how a state dict goes into a
module (all keys or an error that lists the ones that do not fit).
"""

from __future__ import annotations

import os
import urllib.error
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

_MAX_LISTED_KEYS = 4  # an error is one line: a few keys say enough, the count says the rest


class StateDictMismatchError(KeyError):
    """A state dict whose keys or shapes do not match the module it is loaded into."""

    def __str__(self) -> str:  # KeyError would repr() the message and add quotes
        return str(self.args[0])


#: The key of the weight average an atrous training checkpoint holds with ``train.ema``.
EMA_KEY = "model_ema"


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:_MAX_LISTED_KEYS])
    more = len(keys) - _MAX_LISTED_KEYS
    return shown + (f", … and {more} more" if more > 0 else "")


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or a ``torch.save`` file.

    ``torch.save`` files are read with ``weights_only=True``. A file that holds a
    training checkpoint (``{"model": state_dict, ...}`` or ``{"state_dict": ...}``) is
    unwrapped to its model state dict: an atrous run's weight average (``model_ema``, from
    ``train.ema``) where it has one, as inference loads it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # safetensors raises its own error types
            raise ValueError(f"{path} is not a readable safetensors file: {exc}") from exc
    obj = read_torch_file(path, "PyTorch weights file")
    if isinstance(obj, Mapping):
        for wrapper in (EMA_KEY, "model", "state_dict", "model_state_dict"):
            inner = obj.get(wrapper)
            if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                obj = inner
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    return dict(obj)


def read_torch_file(path: str | os.PathLike, what: str) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU; a file it cannot read is a
    ValueError of one line that names the file and says why in the user's terms (torch's
    own message suggests ``weights_only=False``, which would run the file's code)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path} is not a readable {what}: {_why_unreadable(exc)}") from exc


def _why_unreadable(exc: Exception) -> str:
    text = str(exc)
    if "Weights only load failed" in text:
        detail = text.partition("WeightsUnpickler error:")[2].strip().splitlines()
        reason = detail[0].strip() if detail else ""
        if reason.startswith("Unsupported global"):
            return (
                "it holds Python objects besides tensors and plain values, which atrous does not unpickle "
                f"(it could run code): {reason[:160]}"
            )
        return f"not a file torch.save wrote, or a damaged one ({reason[:120] or 'unpickling failed'})"
    if isinstance(exc, RuntimeError) and ("inline_container" in text or "zip archive" in text):
        return "a zip archive, but not one torch.save wrote (or a damaged one)"
    first = text.splitlines()[0][:120] if text else ""
    return f"not a file torch.save wrote, or a damaged one ({type(exc).__name__}: {first})"


def load_strict(
    module: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    *,
    source: str,
    ignore_prefixes: Iterable[str] = (),
    hint: str = "",
) -> None:
    """Load ``state_dict`` into ``module``: every key must match, or nothing is loaded.

    Args:
        source: what the weights are (a file name), for the error message.
        ignore_prefixes: keys to drop before matching, such as an ImageNet classifier
            (``fc.``) that a segmentation backbone does not have.
        hint: a sentence appended to the error (how to build a matching model).

    Raises:
        StateDictMismatchError: listing missing keys, unexpected keys and shape
            mismatches. The module is left as it was.
    """
    prefixes = tuple(ignore_prefixes)
    incoming = {k: v for k, v in state_dict.items() if not (prefixes and k.startswith(prefixes))}
    own = module.state_dict()
    missing = sorted(k for k in own if k not in incoming)
    unexpected = sorted(k for k in incoming if k not in own)
    mismatched = sorted(
        f"{k} {tuple(incoming[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in incoming and incoming[k].shape != own[k].shape
    )
    if missing or unexpected or mismatched:
        parts = [f"{source} does not match {type(module).__name__}:"]
        if missing:
            parts.append(f"{len(missing)} missing keys ({_listing(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys ({_listing(unexpected)})")
        if mismatched:
            parts.append(f"{len(mismatched)} shape mismatches, file vs model ({_listing(mismatched)})")
        message = "; ".join(parts[1:])
        raise StateDictMismatchError(f"{parts[0]} {message}." + (f" {hint}" if hint else ""))
    module.load_state_dict(incoming, strict=True)


def fetch_weights(source: str, *, default_weights: str | None = None) -> dict[str, torch.Tensor]:
    """Resolve a weights source to a state dict.

    ``source`` is a local file, an ``http(s)://`` or ``file://`` URL (downloaded once into
    torch.hub's cache, ``$TORCH_HOME/hub/checkpoints``), or a torchvision weight name
    such as ``"ResNet50_Weights.IMAGENET1K_V2"``. ``default_weights`` names the
    torchvision weight enum to use for a bare member name (``"IMAGENET1K_V1"``) or for
    ``"DEFAULT"``.

    Offline, a download fails with an error that names the file to place and where.
    """
    if "://" in source:
        return _download(source)
    if Path(source).exists():
        return load_state_dict_file(source)
    url = _torchvision_weight_url(source, default_weights)
    if url is None:
        raise FileNotFoundError(
            f"weights {source!r} are neither a file, a URL, nor a torchvision weight name "
            f"(such as 'ResNet50_Weights.IMAGENET1K_V2')"
        )
    return _download(url)


def _torchvision_weight_url(name: str, default_weights: str | None) -> str | None:
    from torchvision.models import get_weight

    candidates = [name]
    if "." not in name and default_weights:
        candidates.append(f"{default_weights}.{name}")
    for candidate in candidates:
        try:
            return get_weight(candidate).url
        except (ValueError, KeyError, AttributeError):
            continue
    return None


def _download(url: str) -> dict[str, torch.Tensor]:
    hub_dir = Path(torch.hub.get_dir()) / "checkpoints"
    filename = os.path.basename(url.split("?")[0])
    cached = hub_dir / filename
    if not cached.exists():
        hub_dir.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(url, str(cached), progress=True)
        except (urllib.error.URLError, OSError) as exc:
            raise ConnectionError(
                f"could not download {url} ({exc}). On a machine without internet access, "
                f"fetch that file elsewhere and place it at {cached}, or pass the local path instead."
            ) from exc
    return load_state_dict_file(cached)
