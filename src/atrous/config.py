"""Run configuration: dataclasses loaded from flat YAML recipes, overridable from the CLI.

A recipe (``configs/*.yaml``) has up to four sections — ``model``, ``data``, ``train``,
``eval`` — whose keys are the fields below. ``--set train.lr=0.02`` overrides one value
(parsed as YAML, so ``--set data.crop_size=[256,256]`` works). Unknown sections or keys
are errors that name the key and list the valid ones; the resolved config is written
into the run folder as ``config.yaml``.

Numbers follow YAML 1.2 (``1e-3`` is a number, as it is in every language; PyYAML's
YAML 1.1 reads it as a string), and every value is checked when the config is loaded
(:data:`CHECKS`, :func:`validate_config`): a value that cannot be meant is an error
naming ``section.key``, the value and what is allowed, before any work starts.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .utils.registry import did_you_mean


class ConfigError(ValueError):
    """A recipe or override that does not fit the configuration schema."""


# -- YAML ---------------------------------------------------------------------------------


class YAMLLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader with YAML 1.2's floats: ``1e-3``, ``1E5``, ``-2.5e+3``, ``.5e-2``,
    ``-.5`` are numbers. YAML 1.1 (PyYAML) wants a dot and a signed exponent (``1.0e-3``) and
    reads ``1e-3`` as the string "1e-3". Everything else (ints, booleans, null) is as before."""


_FLOAT_TAG = "tag:yaml.org,2002:float"
# Only the float resolver changes; the others stay, so ints such as "08" are not floats.
YAMLLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _FLOAT_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
YAMLLoader.add_implicit_resolver(
    _FLOAT_TAG,
    re.compile(
        r"""^(?:[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?
            |[-+]?\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?
            |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
            |[-+]?\.(?:inf|Inf|INF)
            |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def parse_yaml(text: str) -> Any:
    """``text`` as YAML with :class:`YAMLLoader` (recipes, ``--set`` and ``-o`` values)."""
    return yaml.load(text, Loader=YAMLLoader)  # a SafeLoader subclass: no arbitrary objects


# -- the schema ---------------------------------------------------------------------------


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
    # Semantic models: photos are brought to this shorter side before the scale augmentation,
    # and the network sees them at it when evaluating and predicting (scored and written at
    # their own size). None: scales are relative to each image's own size.
    base_size: int | None = None
    hflip: float = 0.5
    vflip: float = 0.0  # instance datasets only (nuclei and cells have no up or down)
    jitter: bool | float = True  # colour jitter: true (±0.2), false, or its strength in [0, 1]
    elastic: bool | float = False  # U-Net §3.1 elastic deformation; a number is its σ in pixels (true: 10)
    # Semantic models: Simple Copy-Paste (Ghiasi et al. 2021), e.g. {probability: 0.5, classes:
    # [person]}: with that probability a crop gets the pixels of these classes (indices or
    # names) from another augmented training crop pasted on top.
    copy_paste: dict[str, Any] | None = None
    batch_size: int = 8
    val_batch_size: int = 1
    workers: int = 2


@dataclass
class TrainConfig:
    steps: int = 30_000
    max_time_s: float | None = None  # stop early (and checkpoint) after this many seconds
    # Measure this machine's speed over the first steps and shorten steps (never lengthen them)
    # so that the learning-rate schedule ends within max_time_s (engine/budget.py).
    fit_to_budget: bool = False
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
    # Exponential moving average of the weights (engine/ema.py), e.g. 0.999: evaluated, kept as
    # best/ and saved beside the raw weights. None: the run's own weights.
    ema: float | None = None
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

    def save(self, path: str | os.PathLike, *, header: str = "") -> None:
        """Write the config as YAML, after ``header`` (comment lines, e.g. who wrote it)."""
        from .utils.atomic import atomic_write_text

        atomic_write_text(Path(path), header + yaml.safe_dump(self.to_dict(), sort_keys=False))


# -- what each value may be ---------------------------------------------------------------
#
# The types come from the annotations above (checked by _coerce; floats must be finite);
# CHECKS says which values of that type can be meant. One entry per field — a test checks
# that no field is missing — and CROSS_CHECKS for the rules between fields.


@dataclass(frozen=True)
class Check:
    """``test(value)`` is true for the values that can be meant; ``allowed`` says which
    those are in the error. A ``test`` may also raise ValueError with its own reason
    (registries: the close names)."""

    test: Callable[[Any], bool]
    allowed: str


def _any() -> Check:
    return Check(lambda v: True, "any value")


def _optional(check: Check) -> Check:
    return Check(lambda v: v is None or check.test(v), f"{check.allowed}, or null")


def _at_least(low: float) -> Check:
    return Check(lambda v: v >= low, f">= {low}")


def _above(low: float) -> Check:
    return Check(lambda v: v > low, f"> {low}")


def _within(low: float, high: float, *, high_open: bool = False) -> Check:
    if high_open:
        return Check(lambda v: low <= v < high, f"in [{low}, {high})")
    return Check(lambda v: low <= v <= high, f"in [{low}, {high}]")


def _one_of(*choices: Any) -> Check:
    names = ", ".join(json.dumps(c) if not isinstance(c, str) else c for c in choices)
    return Check(lambda v: any(v == c and type(v) is type(c) for c in choices), f"one of {names}")


def _nonempty_str() -> Check:
    return Check(lambda v: v.strip() != "", "a non-empty string")


def _list_of(check: Check, *, length: int | None = None) -> Check:
    return Check(
        lambda v: (len(v) == length if length else len(v) > 0) and all(check.test(x) for x in v),
        f"{length} values {check.allowed}" if length else f"a non-empty list of values {check.allowed}",
    )


def _finite_tree(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, Mapping):
        return all(_finite_tree(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(_finite_tree(v) for v in value)
    return True


def _mapping() -> Check:
    # The keys are the family's, dataset's or loss's own, checked where they are used
    # (before training starts); here only that no number in them is NaN or infinite.
    return Check(_finite_tree, "a mapping without NaN or infinite numbers")


def _registered(kind: str, names: Callable[[], list[str]], *, fold_case: bool = False, listing: str = "") -> Check:
    """A name in a registry (imported when first checked); the error names the close ones."""

    def test(value: str) -> bool:
        known = names()
        name = value.lower() if fold_case else value
        if name in known:
            return True
        hint = did_you_mean(name, known, n=3, cutoff=0.5, quote=True, lead=" Did you mean ")
        raise ValueError(f"unknown {kind} {value!r}.{hint} {listing or 'Known: ' + ', '.join(known)}")

    return Check(test, f"a known {kind}")


def _model_names() -> list[str]:
    from .models import list_models

    return list_models()


def _dataset_names() -> list[str]:
    from .data import list_datasets, list_instance_datasets

    return sorted({*list_datasets(), *list_instance_datasets()})


def _loss_names() -> list[str]:
    from .losses import list_losses

    return list_losses()


def _weight_map_options(value: Mapping[str, Any]) -> bool:
    from .data.weight_map import WeightMapDataset

    # The wrapper's own check (known keys, then the options run on a tiny mask); no dataset needed.
    WeightMapDataset(None, **value)  # type: ignore[arg-type]
    return True


def _copy_paste_options(value: Mapping[str, Any]) -> bool:
    from .data.copy_paste import check_copy_paste_options

    check_copy_paste_options(dict(value))  # raises with the reason
    return True


# The largest random scale: DeepLab draws 0.5-2.0; 10 already makes a crop's source 100× the pixels.
MAX_SCALE = 10.0


def _increasing_pair(v: list[float]) -> bool:
    return len(v) == 2 and 0 < v[0] <= v[1]


def _class_weights(v: list[float]) -> bool:
    return len(v) > 0 and all(w >= 0 for w in v) and any(w > 0 for w in v)


def _elastic(v: bool | float) -> bool:
    return isinstance(v, bool) or v >= 0


def _jitter(v: bool | float) -> bool:
    # Brightness, contrast and saturation factors are drawn from [1 − v, 1 + v]: beyond 1 the
    # low end would be clipped at 0 (a black or grey image), not a stronger jitter.
    return isinstance(v, bool) or 0 <= v <= 1


_DEVICE = re.compile(r"^(auto|cpu|mps|(cuda|xpu)(:[0-9]+)?)$")
STRIDES = (8, 16, 32)
OPTIMIZERS = ("sgd", "adamw")
AMP = ("auto", "bf16", "fp16", "off", True, False)

CHECKS: dict[str, Check] = {
    # model
    "model.name": _registered("model", _model_names, listing="`atrous models` lists them."),
    "model.num_classes": _optional(_at_least(1)),
    "model.output_stride": _optional(_one_of(*STRIDES)),
    "model.multi_grid": _optional(_list_of(_at_least(1))),
    "model.pretrained_backbone": _optional(_nonempty_str()),
    "model.aux": _any(),
    "model.checkpoint_path": _optional(_nonempty_str()),
    "model.options": _mapping(),
    # data
    "data.dataset": _registered("dataset", _dataset_names, fold_case=True),
    "data.root": _optional(_nonempty_str()),
    "data.train_split": _nonempty_str(),
    "data.val_split": _nonempty_str(),
    "data.options": _mapping(),
    "data.train_options": _mapping(),
    "data.val_options": _mapping(),
    "data.crop_size": _list_of(_at_least(1), length=2),
    "data.scale_range": Check(
        lambda v: _increasing_pair(v) and v[1] <= MAX_SCALE,
        f"two numbers 0 < low <= high <= {MAX_SCALE:g} ([1, 1]: no rescaling)",
    ),
    "data.base_size": _optional(_at_least(1)),
    "data.hflip": _within(0, 1),
    "data.vflip": _within(0, 1),
    "data.jitter": Check(_jitter, "true (±0.2), false, or a strength in [0, 1]"),
    "data.elastic": Check(_elastic, "true, false, or a σ in pixels >= 0"),
    "data.copy_paste": _optional(Check(_copy_paste_options, "a mapping of probability and classes")),
    "data.batch_size": _at_least(1),
    "data.val_batch_size": _at_least(1),
    "data.workers": _at_least(0),
    # train
    "train.steps": _at_least(1),
    "train.max_time_s": _optional(_above(0)),
    "train.fit_to_budget": _any(),
    "train.optimizer": _one_of(*OPTIMIZERS),
    "train.lr": _above(0),
    "train.momentum": _within(0, 1, high_open=True),
    "train.weight_decay": _at_least(0),
    # poly_power <= 0 would make (1 - step/steps)^p divide by zero at the last step.
    "train.poly_power": _above(0),
    "train.warmup_steps": _at_least(0),
    "train.warmup_ratio": _within(0, 1, high_open=True),
    "train.head_lr_mult": _above(0),
    "train.loss": _registered("loss", _loss_names),
    "train.loss_options": _mapping(),
    "train.class_weights": _optional(Check(_class_weights, "a non-empty list of weights >= 0, not all 0")),
    "train.weight_map": _optional(Check(_weight_map_options, "a mapping of w0, sigma, class_weights")),
    "train.aux_weight": _optional(_at_least(0)),
    "train.amp": Check(lambda v: v in AMP, "auto, bf16, fp16 or off"),
    "train.channels_last": _any(),
    "train.grad_accum": _at_least(1),
    "train.grad_clip": _optional(_above(0)),
    "train.sync_bn": _any(),
    "train.ema": _optional(Check(lambda v: 0 < v < 1, "a decay in (0, 1), e.g. 0.999")),
    "train.eval_every": _at_least(1),
    "train.log_every": _at_least(1),
    "train.checkpoint_every": _at_least(1),
    "train.seed": Check(lambda v: 0 <= v < 2**63, ">= 0 and < 2**63"),
    "train.deterministic": _any(),
    "train.tensorboard": _any(),
    "train.device": Check(lambda v: bool(_DEVICE.match(v)), "auto, cpu, cuda or cuda:N (also mps, xpu, xpu:N)"),
    "train.progress": _any(),
    # eval
    "eval.scales": _list_of(_above(0)),
    "eval.flip": _any(),
    "eval.output_stride": _optional(_one_of(*STRIDES)),
    "eval.tile": _optional(_at_least(1)),
    "eval.tile_overlap": _within(0, 1, high_open=True),
}


def _warmup_within_steps(c: Config) -> str | None:
    t = c.train
    if t.warmup_steps > t.steps:
        return f"train.warmup_steps must be <= train.steps ({t.steps}), got {t.warmup_steps}"
    return None


def _fit_needs_a_budget(c: Config) -> str | None:
    if c.train.fit_to_budget and c.train.max_time_s is None:
        return "train.fit_to_budget=true fits the schedule to train.max_time_s: set it too"
    return None


def _weight_map_needs_plain_ce(c: Config) -> str | None:
    t = c.train
    if t.weight_map is not None and (t.loss != "ce" or t.class_weights is not None or t.loss_options):
        return (
            "train.weight_map weights the cross-entropy per pixel (U-Net §3); it needs train.loss=ce "
            "without class_weights or loss_options (put class_weights inside weight_map)"
        )
    return None


def _dataset_options_not_reserved(c: Config) -> str | None:
    # root, split and transforms are set from data.root, data.*_split and the recipe's
    # augmentation; given again in an options mapping they would collide in the call.
    where = {"root": "data.root", "split": "data.train_split / data.val_split", "transforms": "data.* augmentation"}
    for section in ("options", "train_options", "val_options"):
        for key in getattr(c.data, section):
            if key in where:
                return f"data.{section}.{key} is not a dataset option: set {where[key]} instead"
    return None


def _semantic_vflip_unused(c: Config) -> str | None:
    from .models import model_task

    if c.data.vflip and model_task(c.model.name) != "instance":
        return (
            f"data.vflip={c.data.vflip} applies to instance models only (nuclei and cells have no up or down); "
            f"{c.model.name} is a semantic model, whose training would ignore it: remove it"
        )
    return None


def _semantic_only_data_options(c: Config) -> str | None:
    # Instance training rescales and flips samples with their boxes and jitters their colour
    # (data/instances/transforms.py); the model resizes images itself. Nothing there would
    # crop, read a base size, paste pixels between crops, or warp N masks and their boxes
    # elastically. crop_size has a default, so only another value is refused.
    from .models import model_task

    if model_task(c.model.name) != "instance":
        return None
    d = c.data
    for key, used in (
        ("crop_size", d.crop_size != DataConfig().crop_size),
        ("base_size", d.base_size is not None),
        ("copy_paste", d.copy_paste is not None),
        ("elastic", bool(d.elastic)),  # 0 and false: none
    ):
        if used:
            return (
                f"data.{key}={getattr(d, key)} applies to semantic models only; {c.model.name} would ignore it: "
                "remove it"
            )
    return None


def _base_size_and_tile(c: Config) -> str | None:
    if c.data.base_size is None:
        return None
    if c.eval.tile is not None:
        return (
            f"data.base_size={c.data.base_size} resizes each image for the network, eval.tile={c.eval.tile} tiles it "
            "at its own size: give one of them"
        )
    return None


def _instance_model_fields_used(c: Config) -> str | None:
    # Mask R-CNN has no output stride, multi-grid or auxiliary head, and its class count is
    # model.num_classes (or the dataset's): values there would be ignored without a word.
    from .models import model_task

    if model_task(c.model.name) != "instance":
        return None
    m = c.model
    for key in ("output_stride", "multi_grid", "aux"):
        if getattr(m, key) is not None:
            return f"model.{key}={getattr(m, key)} does not apply to {m.name} (instance segmentation): remove it"
    for key in ("num_classes", "pretrained_backbone", "checkpoint_path"):
        if key in m.options:
            return f"model.options.{key}: set model.{key} instead"
    return None


def _loss_options_valid(c: Config) -> str | None:
    from .losses import check_loss_options  # losses import torch: only when a config is checked

    try:
        check_loss_options(c.train.loss, c.train.loss_options)
    except ValueError as exc:
        return str(exc)
    return None


CROSS_CHECKS: tuple[Callable[[Config], str | None], ...] = (
    _warmup_within_steps,
    _fit_needs_a_budget,
    _weight_map_needs_plain_ce,
    _loss_options_valid,
    _dataset_options_not_reserved,
    _semantic_vflip_unused,
    _semantic_only_data_options,
    _base_size_and_tile,
    _instance_model_fields_used,
)


def validate_config(config: Config) -> Config:
    """Check every value of ``config`` — its type, :data:`CHECKS` and :data:`CROSS_CHECKS` —
    and raise :class:`ConfigError` naming the first ``section.key`` that cannot be meant.
    :func:`load_config` calls it; so do the trainers, for configs built in Python."""
    if not isinstance(config, Config):
        raise TypeError(f"expected an atrous Config, got {type(config).__name__}")
    for section in dataclasses.fields(Config):
        part = getattr(config, section.name)
        cls = typing.get_type_hints(Config)[section.name]
        if not isinstance(part, cls):
            raise ConfigError(f"config.{section.name} must be a {cls.__name__}, got {part!r}")
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            key = f"{section.name}.{f.name}"
            value = _coerce(getattr(part, f.name), hints[f.name], key)
            check = CHECKS[key]
            try:
                ok = check.test(value)
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"{key}={_show(value)}: {exc}") from None
            if not ok:
                raise ConfigError(f"{key} must be {check.allowed}, got {_show(value)}")
    for rule in CROSS_CHECKS:
        message = rule(config)
        if message:
            raise ConfigError(message)
    return config


def _show(value: Any) -> str:
    """A value as YAML would write it inline (0.01, null, true, [1, 2], {a: 1}), strings quoted."""
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, float) and not math.isfinite(value):
        return ".nan" if math.isnan(value) else ("-.inf" if value < 0 else ".inf")
    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=1_000_000).strip()
    return text[: -len("...")].strip() if text.endswith("...") else text


# -- loading ------------------------------------------------------------------------------


def load_config(
    path: str | os.PathLike | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    *,
    base: str | os.PathLike | Mapping[str, Any] | None = None,
) -> Config:
    """Read a YAML recipe (or start from defaults), apply ``key=value`` overrides, and
    check every value (:func:`validate_config`).

    ``base``: a recorded config (a run's ``config.yaml``, or its dict) to start from
    instead of the defaults; the recipe's values then replace its values key by key, and the
    overrides come last. ``atrous train --resume`` reads a run this way.
    """
    raw: dict[str, Any] = {}
    if base is not None:
        recorded = base if isinstance(base, Mapping) else _read_yaml(Path(base))
        try:  # a broken recorded config is named as such, not blamed on the recipe
            validate_config(_build(Config, dict(recorded), "config"))
        except ConfigError as exc:
            label = "the recorded config" if isinstance(base, Mapping) else str(base)
            raise ConfigError(f"{label}: {exc}") from None
        raw = {k: dict(v) if isinstance(v, Mapping) else v for k, v in recorded.items()}
    if path is not None:
        recipe = _read_yaml(Path(path))
        for section, values in recipe.items():
            if isinstance(values, Mapping) and isinstance(raw.get(section), dict):
                raw[section].update(values)
            else:
                raw[section] = values
    for item in overrides:
        _apply_override(raw, item)
    return validate_config(_build(Config, raw, "config"))


def config_from_dict(raw: Mapping[str, Any], where: str = "config") -> Config:
    """A :class:`Config` from a dict as ``Config.to_dict`` wrote it (a checkpoint's
    ``"config"``), types checked but not :data:`CHECKS`: a recorded config is compared,
    not trained from."""
    return _build(Config, dict(raw), where)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        raw = parse_yaml(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {' '.join(str(exc).split())}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not a UTF-8 text file ({exc.reason} at byte {exc.start})") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping of sections (model, data, train, eval)")
    for section, values in raw.items():
        if values is None:  # "train:" with nothing under it: an empty section
            raw[section] = {}
        elif not isinstance(values, dict):
            raise ConfigError(f"{path}: section {section!r} must be a mapping of keys, got {values!r}")
    return raw


def _apply_override(raw: dict[str, Any], item: str) -> None:
    key, sep, value = item.partition("=")
    if not sep or "." not in key:
        raise ConfigError(f"--set expects section.key=value (e.g. train.lr=0.01), got {item!r}")
    section, _, name = key.strip().partition(".")
    try:
        parsed = parse_yaml(value)
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {item!r}: the value is not valid YAML ({' '.join(str(exc).split())})") from exc
    target = raw.setdefault(section, {})
    if not isinstance(target, dict):
        raise ConfigError(f"--set {item!r}: section {section!r} is not a mapping")
    *parents, leaf = name.split(".")
    for parent in parents:  # data.options.num_samples=10
        target = target.setdefault(parent, {})
        if not isinstance(target, dict):
            raise ConfigError(f"--set {item!r}: {parent!r} is not a mapping")
    target[leaf] = parsed


def _build(cls: type, raw: Any, where: str):
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = [k for k in raw if k not in fields]
    if unknown:
        key = unknown[0]
        hint = did_you_mean(str(key), fields, n=1, cutoff=0.6, quote=True, lead=" Did you mean ")
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
                # The error of the member the value's kind fits (a number for `bool | float`).
                fits = arg in (int, float) and isinstance(value, int | float) and not isinstance(value, bool)
                errors.insert(0, str(exc)) if fits else errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if hint is Any:
        return value
    if origin is list:
        (item,) = typing.get_args(hint) or (Any,)
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be a list, got {_show(value)}")
        return [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {_show(value)}")
        return dict(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {_show(value)}")
        return value
    if hint is int:
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            return int(value)  # steps: 3e4 — scientific notation is a float in YAML, and means 30000
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {_show(value)}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where} must be a number, got {_show(value)}")
        if not math.isfinite(value):
            raise ConfigError(f"{where} must be a finite number, got {_show(value)}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            note = " (YAML reads bare on/off/yes/no as booleans: quote the value)" if isinstance(value, bool) else ""
            raise ConfigError(f"{where} must be a string, got {_show(value)}{note}")
        return value
    return value


# -- resuming -----------------------------------------------------------------------------

# What `--resume` may change: values that decide how a run is watched, logged, evaluated,
# saved, or where and how fast it computes, never which updates the weights receive, so the
# resumed run is the run that was started. Everything else (schedule, optimiser, loss, data,
# augmentation, seed, batch, precision, model) is refused: a checkpoint's optimiser and
# scheduler carry their own lr, steps and momentum, and would silently keep the old ones.
RESUME_MAY_CHANGE: tuple[str, ...] = (
    # Evaluating and saving read the weights, never change them (eval mode, no RNG draws).
    "train.eval_every",
    "train.log_every",
    "train.checkpoint_every",
    "train.progress",
    "train.tensorboard",
    "train.max_time_s",  # a budget for this invocation: the clock starts at each start
    # Where the same computation runs: resuming on another machine or GPU. (Not
    # train.channels_last: dropout draws another mask on an NHWC tensor from the same seed.)
    "train.device",
    # Samples are keyed by (seed, index) (engine/sampling.py): the data do not depend on workers.
    "data.workers",
    # The same dataset at another path (another machine, a moved disk); its contents are
    # the user's to keep — the run cannot tell either way.
    "data.root",
    "data.val_batch_size",  # evaluation only
    "eval.",  # how validation is computed (tiles, scales): training never reads it
)


def config_differences(old: Config, new: Config) -> list[tuple[str, Any, Any]]:
    """``(section.key, old value, new value)`` for each field that differs."""
    changes = []
    for section in dataclasses.fields(Config):
        a, b = getattr(old, section.name), getattr(new, section.name)
        for f in dataclasses.fields(a):
            before, after = _canonical(getattr(a, f.name)), _canonical(getattr(b, f.name))
            if before != after:
                changes.append((f"{section.name}.{f.name}", getattr(a, f.name), getattr(b, f.name)))
    return changes


def _canonical(value: Any) -> Any:
    # Tuples and lists, ints and floats compare as the YAML round trip makes them compare.
    if isinstance(value, tuple):
        return list(value)
    return value


def resume_may_change(key: str) -> bool:
    """Whether ``--resume`` may change ``key`` (:data:`RESUME_MAY_CHANGE`)."""
    return any(key == k or (k.endswith(".") and key.startswith(k)) for k in RESUME_MAY_CHANGE)


def show_change(key: str, old: Any, new: Any) -> str:
    """``train.steps 6 → 10``."""
    return f"{key} {_show(old)} → {_show(new)}"
