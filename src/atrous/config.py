"""Run configuration: dataclasses loaded from flat YAML recipes, overridable from the CLI.

A recipe (``configs/*.yaml``) has up to four sections — ``model``, ``data``, ``train``,
``eval`` — whose keys are the fields below. ``--set train.lr=0.02`` overrides one value
(parsed as YAML, so ``--set data.crop_size=[256,256]`` works). Unknown sections or keys
are errors that name the key and list the valid ones; the resolved config is written
into the run folder as ``config.yaml``.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A recipe or override that does not fit the configuration schema."""


@dataclass
class ModelConfig:
    name: str = "deeplabv3plus_resnet18"
    num_classes: int | None = None  # None: taken from the dataset
    output_stride: int | None = None  # None: the family's default
    multi_grid: list[int] | None = None
    pretrained_backbone: str | None = None
    aux: bool | None = None  # None: the family's default
    checkpoint_path: str | None = None  # whole-model weights to start from
    options: dict[str, Any] = field(default_factory=dict)  # the family's own arguments (upsample, base_chs, …)


@dataclass
class DataConfig:
    dataset: str = "synthetic"
    root: str | None = None  # None: $ATROUS_DATA/<dataset> where the dataset has a default
    train_split: str = "train"
    val_split: str = "val"
    options: dict[str, Any] = field(default_factory=dict)  # extra dataset arguments, both splits
    train_options: dict[str, Any] = field(default_factory=dict)
    val_options: dict[str, Any] = field(default_factory=dict)
    crop_size: list[int] = field(default_factory=lambda: [512, 512])
    scale_range: list[float] = field(default_factory=lambda: [0.5, 2.0])
    hflip: float = 0.5
    vflip: float = 0.0  # instance datasets only (nuclei and cells have no up or down)
    jitter: bool = True
    elastic: bool | float = False  # U-Net §3.1 elastic deformation; a number is its σ in pixels (true: 10)
    batch_size: int = 8
    val_batch_size: int = 1
    workers: int = 2


@dataclass
class TrainConfig:
    steps: int = 30_000
    max_time_s: float | None = None  # stop early (and checkpoint) after this many seconds
    optimizer: str = "sgd"  # sgd | adamw
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    poly_power: float = 0.9
    warmup_steps: int = 0
    warmup_ratio: float = 0.1
    head_lr_mult: float = 1.0
    loss: str = "ce"
    loss_options: dict[str, Any] = field(default_factory=dict)
    class_weights: list[float] | None = None
    # U-Net §3 border weight map, e.g. {w0: 10, sigma: 5, class_weights: balanced}: the
    # cross-entropy is weighted per pixel by it (loss must be "ce").
    weight_map: dict[str, Any] | None = None
    aux_weight: float | None = None  # None: the model's own (0.4 for PSPNet)
    # auto: bf16 on GPUs that have it (else fp16 + scaler), bf16 on CPUs with native bf16
    # (AVX-512 BF16 / AMX), full precision otherwise. YAML's bare off/false also mean off.
    amp: str | bool = "auto"
    channels_last: bool = True  # NHWC: 1.3–2× faster bf16 training on oneDNN (docs/benchmarks.md)
    grad_accum: int = 1
    grad_clip: float | None = None
    sync_bn: bool = False
    eval_every: int = 1000
    log_every: int = 20
    checkpoint_every: int = 1000
    seed: int = 0
    deterministic: bool = False
    tensorboard: bool = False
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    progress: bool = True


@dataclass
class EvalConfig:
    scales: list[float] = field(default_factory=lambda: [1.0])
    flip: bool = False
    output_stride: int | None = None  # evaluate at another output stride (DeepLab v3 §4.3)
    tile: int | None = None  # predict in tiles of this size (overlap-tile for the unpadded U-Net)
    tile_overlap: float = 0.25  # sliding windows' overlap (not used by overlap-tile)


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | os.PathLike) -> None:
        from .atomic import atomic_write_text

        atomic_write_text(Path(path), yaml.safe_dump(self.to_dict(), sort_keys=False))


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML recipe (or start from defaults) and apply ``key=value`` overrides."""
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
        if not isinstance(raw, dict):
            raise ConfigError(f"{path} must hold a mapping of sections (model, data, train, eval)")
    for item in overrides:
        _apply_override(raw, item)
    return _build(Config, raw, "config")


def _apply_override(raw: dict[str, Any], item: str) -> None:
    key, sep, value = item.partition("=")
    if not sep or "." not in key:
        raise ConfigError(f"--set expects section.key=value (e.g. train.lr=0.01), got {item!r}")
    section, _, name = key.strip().partition(".")
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {item!r}: the value is not valid YAML ({exc})") from exc
    target = raw.setdefault(section, {})
    if not isinstance(target, dict):
        raise ConfigError(f"--set {item!r}: section {section!r} is not a mapping")
    *parents, leaf = name.split(".")
    for parent in parents:  # data.options.num_samples=10
        target = target.setdefault(parent, {})
    target[leaf] = parsed


def _build(cls: type, raw: Any, where: str):
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = [k for k in raw if k not in fields]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, fields, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown key {where}.{key}.{hint} Valid keys: {', '.join(fields)}")
    values = {}
    for name, value in raw.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            values[name] = _build(hint, value, f"{where}.{name}" if where != "config" else name)
        else:
            values[name] = _coerce(value, hint, f"{where}.{name}")
    return cls(**values)


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check ``value`` against a simple annotation (int, float, str, bool, list, dict, Optional)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if hint is Any:
        return value
    if origin is list:
        (item,) = typing.get_args(hint) or (Any,)
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        return [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {value!r}")
        return dict(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            note = " (YAML reads bare on/off/yes/no as booleans: quote the value)" if isinstance(value, bool) else ""
            raise ConfigError(f"{where} must be a string, got {value!r}{note}")
        return value
    return value
