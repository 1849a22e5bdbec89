"""Device, seeding and precision for the machine at hand: precision chosen by measurement, remembered per machine.

Native bf16 instructions are not the same as bf16 being faster. Measured for this
project (DeepLab v3-ResNet-50, output stride 8, 1×3×512², the inference fast path):

=============================================  =========  =========
CPU (2 cores)                                  fp32       bf16
=============================================  =========  =========
AMD EPYC Zen 4 (AVX-512 BF16, no AMX)          1.44 s     0.73 s
the same, ``ONEDNN_MAX_CPU_ISA=AVX512_CORE``   1.59 s     5.01 s
the same, ``ONEDNN_MAX_CPU_ISA=AVX2``          1.72 s     9.22 s
=============================================  =========  =========

and an Intel CPU with AVX-512 BF16 but no AMX ran bf16 convolutions 1.4–2× *slower*
than fp32. A CPU flag cannot tell these apart, so ``precision="auto"`` (inference) and
``train.amp="auto"`` time the candidates on the model's own workload instead:

1. The decision is looked up under a key made of the machine (CPU model and flags, the
   oneDNN ISA cap, the thread count; or the GPU's name and capability), the torch
   version, the task (``infer`` or ``train``), the model's signature and the probe's
   shape (the shape class). A cache entry written by another torch version has another
   key, so it is never used.
2. Otherwise, on the CPU, a reduced precision whose single convolution runs more than
   :data:`SCREEN_FACTOR` times slower than fp32 (:func:`conv_slowdown`, milliseconds) is
   emulated, not native, and rejected before the model runs in it. Every remaining
   candidate runs the probe once to warm up, then in interleaved rounds (a slow moment of
   a shared machine lands on all of them); the median counts. A candidate far slower
   than fp32 in its warm-up (:data:`WARMUP_DROP_FACTOR`) or first round
   (:data:`DROP_FACTOR`) is dropped without further rounds.
3. For inference a candidate must reproduce the plain fp32 model's labels on the probe
   on at least :data:`MIN_AGREEMENT` of the pixels that fp32 decides (not at a tie, see
   :func:`label_agreement`), and every candidate's output must be finite.
4. Reduced precision is kept only when it beats fp32 by :data:`MIN_SPEEDUP`: ``auto``
   never picks a path measurably slower than fp32, and near-ties keep full precision.
5. The decision and its figures are written to ``precision.json`` in the cache folder
   (``$ATROUS_CACHE``, else the platform's user cache folder) and logged on the
   ``atrous.runtime`` logger, so later runs start at once.

This module knows nothing of models or files beyond ``nn.Module``: callers (the
Predictor, the trainers, ``atrous bench``) build the candidates and the probe.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import random
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .utils.atomic import atomic_write_text

log = logging.getLogger("atrous.runtime")

CACHE_ENV = "ATROUS_CACHE"
CACHE_FILE = "precision.json"
CACHE_VERSION = 1
KINDS = ("infer", "train")
#: Each precision's autocast dtype (int8 models from ``atrous quantize`` run without autocast).
DTYPES: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16, "int8": None}

#: Labels of a reduced-precision path must equal fp32's on this share of the probe's pixels.
MIN_AGREEMENT = 0.995
#: Where fp32's top two logits are closer than this share of the typical logit range, the
#: pixel is a tie and does not count towards the agreement.
TIE_MARGIN = 0.01
#: Reduced precision must be at least this much faster than fp32 to be chosen.
MIN_SPEEDUP = 1.10
#: After the first timed round, a candidate this much slower than fp32 is not timed again.
DROP_FACTOR = 1.5
#: A candidate whose warm-up call takes this much longer than fp32's is not timed at all.
WARMUP_DROP_FACTOR = 3.0
#: On the CPU, a reduced precision whose single 3×3 convolution runs this much slower than
#: fp32's is emulated, not native: it is rejected before the model is run in it (an
#: emulated bf16 training step of DeepLab v3-ResNet-50 took 108 s against 3 s in fp32).
SCREEN_FACTOR = 2.5
#: Timed rounds after the warm-up call.
ROUNDS = 3


@dataclass
class PrecisionChoice:
    """What ``auto`` resolved to, and why.

    Attributes:
        precision: ``fp32``, ``bf16``, ``fp16`` (or ``int8`` for a quantized model).
        source: ``measured`` (timed now), ``cache`` (timed earlier on this machine),
            ``requested`` (not ``auto``) or ``only candidate``.
        timings: median seconds per candidate on the probe.
        agreement: label agreement with the fp32 model per candidate (inference only).
        rejected: candidate → why it was not chosen.
        probe: the probe's input shape.
    """

    precision: str
    source: str
    timings: dict[str, float] = field(default_factory=dict)
    agreement: dict[str, float] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)
    probe: list[int] = field(default_factory=list)

    @property
    def dtype(self) -> torch.dtype | None:
        """The autocast dtype (``None``: full precision)."""
        return DTYPES[self.precision]

    def summary(self) -> str:
        """One line: ``bf16 (measured on 1×3×256×256: fp32 212 ms, bf16 104 ms; agreement bf16 99.93 %)``."""
        if not self.timings:
            return f"{self.precision} ({self.source})"
        shape = "×".join(str(s) for s in self.probe)
        order = [name for name in DTYPES if name in self.timings]  # fp32 first, also when read from the cache
        times = ", ".join(f"{name} {self.timings[name] * 1e3:.0f} ms" for name in order)
        text = f"{self.precision} ({self.source} on {shape}: {times}"
        if self.agreement:
            agreed = ", ".join(f"{k} {100 * self.agreement[k]:.2f} %" for k in order if k in self.agreement)
            text += "; label agreement " + agreed
        if self.rejected:
            text += "; not " + ", ".join(f"{k}: {why}" for k, why in self.rejected.items())
        return text + ")"


# -- devices -------------------------------------------------------------------------------


def resolve_device(name: str) -> torch.device:
    """``auto`` (this rank's GPU when CUDA is available, else the CPU), ``cpu``, ``cuda``, ``cuda:N``."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:  # "Expected one of cpu, cuda, ... device type at start of device string"
        raise ValueError(f"device {name!r} is not a device: use auto, cpu, cuda or cuda:N (also mps, xpu)") from exc
    available = {"cuda": torch.cuda.is_available, "mps": _mps_available, "xpu": _xpu_available}
    if device.type in available and not available[device.type]():
        raise ValueError(f"device {name!r} requested but {device.type.upper()} is not available on this machine")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device {name!r} requested but this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def _xpu_available() -> bool:
    xpu = getattr(torch, "xpu", None)
    return bool(xpu is not None and xpu.is_available())


# -- seeding -------------------------------------------------------------------------------


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch; optionally turn on deterministic algorithms."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False


def seed_worker(worker_id: int) -> None:
    """A DataLoader ``worker_init_fn``: torch gives each worker its own seed; Python's and
    NumPy's are derived from it (else every worker would draw the same augmentations)."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


# -- precision -----------------------------------------------------------------------------


def candidate_precisions(device: torch.device) -> list[str]:
    """What ``auto`` chooses among on ``device``, fp32 first."""
    if device.type == "cuda":
        return ["fp32", *(["bf16"] if torch.cuda.is_bf16_supported() else []), "fp16"]
    if device.type == "cpu":
        return ["fp32", "bf16"]
    return ["fp32"]


def precision_dtype(precision: str) -> torch.dtype | None:
    if precision not in DTYPES:
        raise ValueError(f"precision must be one of {', '.join(DTYPES)}, got {precision!r}")
    return DTYPES[precision]


# -- the cache key ---------------------------------------------------------------------------


def machine_fingerprint(device: torch.device) -> dict[str, Any]:
    """What makes one machine time differently from another, for ``device``."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return {
            "gpu": torch.cuda.get_device_name(index),
            "capability": list(torch.cuda.get_device_capability(index)),
            "tf32": torch.backends.cuda.matmul.allow_tf32,
        }
    model, flags = _cpu_model_and_flags()
    return {
        "cpu": model,
        "flags": hashlib.sha256(" ".join(sorted(flags.split())).encode()).hexdigest()[:16],
        "onednn_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", ""),
        "threads": torch.get_num_threads(),
    }


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or the platform's machine type."""
    return _cpu_model_and_flags()[0]


def _cpu_model_and_flags() -> tuple[str, str]:
    model, flags = platform.processor() or platform.machine(), ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and model in ("", platform.machine(), platform.processor()):
                model = value.strip()
            elif key in ("flags", "Features") and not flags:
                flags = value.strip()
    return model, flags


def model_signature(model: nn.Module, *, weights: bool) -> dict[str, Any]:
    """The model's architecture (its saved config where it has one, else its class and
    parameter shapes) and, with ``weights``, a fingerprint of its values: label agreement
    depends on the weights, timing does not."""
    config = getattr(model, "config", None)
    described = config if isinstance(config, Mapping) else {"class": type(model).__qualname__}
    shapes = hashlib.sha256()
    values = hashlib.sha256()
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        shapes.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        if weights and tensor.numel():
            flat = tensor.detach().reshape(-1)
            sample = flat[:: max(1, flat.numel() // 64)][:64].float().cpu()
            values.update(sample.numpy().tobytes())
            values.update(str(float(flat.float().sum())).encode())
    signature = {
        "model": json.loads(json.dumps(described, default=str)),
        "structure": shapes.hexdigest()[:16],
    }
    if weights:
        signature["weights"] = values.hexdigest()[:16]
    return signature


def cache_key(kind: str, device: torch.device, signature: Mapping[str, Any], probe: list[int]) -> dict[str, Any]:
    return {
        "version": CACHE_VERSION,
        "kind": kind,
        "device": device.type,
        "machine": machine_fingerprint(device),
        "torch": torch.__version__,
        "signature": dict(signature),
        "probe": list(probe),
    }


def _digest(key: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


# -- the cache file ---------------------------------------------------------------------------


def cache_dir() -> Path:
    """``$ATROUS_CACHE``, else the platform's user cache folder for atrous."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("atrous", appauthor=False))


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("ignoring the precision cache %s: %s", path, exc)
        return {}
    return data if isinstance(data, dict) else {}


def cached_choice(key: Mapping[str, Any]) -> PrecisionChoice | None:
    """The decision stored for ``key``, if any (entries of another torch version never match)."""
    entry = _read_cache(cache_dir() / CACHE_FILE).get(_digest(key))
    if not isinstance(entry, dict) or entry.get("key", {}).get("torch") != torch.__version__:
        return None
    try:
        choice = PrecisionChoice(**entry["choice"])
        precision_dtype(choice.precision)
    except (KeyError, TypeError, ValueError):
        return None
    choice.source = "cache"
    return choice


def store_choice(key: Mapping[str, Any], choice: PrecisionChoice) -> None:
    """Add the decision to the cache file (atomically); a cache that cannot be written is
    only a warning: the next run measures again."""
    path = cache_dir() / CACHE_FILE
    try:
        entries = _read_cache(path)
        entries[_digest(key)] = {"key": dict(key), "choice": asdict(choice), "time": time.time()}
        atomic_write_text(path, json.dumps(entries, indent=1, sort_keys=True, default=str) + "\n")
    except OSError as exc:
        log.warning("could not write the precision cache %s: %s", path, exc)


# -- measuring ----------------------------------------------------------------------------------


def label_agreement(reference: torch.Tensor, candidate: torch.Tensor) -> float:
    """Share of pixels whose argmax over classes (dim 1) is the same, among the pixels the
    reference decides. Where its top two logits lie closer than :data:`TIE_MARGIN` times
    the typical logit range (the median over pixels of max − min), fp32 itself is at a tie
    that any rounding can flip, so the pixel is not counted. Measured on an untrained
    DeepLab v3-ResNet-50, where such ties are common: bf16 agrees with fp32 on 99.4–99.5 %
    of all probe pixels and on 100 % of the 95.7 % that are decided."""
    reference, candidate = reference.float(), candidate.float()
    same = reference.argmax(1) == candidate.argmax(1)
    if reference.shape[1] < 2:
        return float(same.float().mean())
    top2 = reference.topk(2, dim=1).values
    scale = (reference.amax(1) - reference.amin(1)).median()
    decided = (top2[:, 0] - top2[:, 1]) > TIE_MARGIN * scale
    if not decided.any():
        return 1.0
    return float(same[decided].float().mean())


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(
    candidates: Mapping[str, Callable[[], torch.Tensor]],
    *,
    device: torch.device,
    timer: Callable[[], float] = time.perf_counter,
    rounds: int = ROUNDS,
) -> tuple[dict[str, float], dict[str, torch.Tensor], dict[str, str]]:
    """(median seconds, last output, dropped → why) of each candidate, timed in interleaved
    rounds after one warm-up call each (fp32 first); a candidate far slower than fp32 in
    its warm-up or its first round is not timed further."""
    outputs: dict[str, torch.Tensor] = {}
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    dropped: dict[str, str] = {}
    warmup: dict[str, float] = {}
    for name, run in candidates.items():  # warm-up: allocation, kernel choice
        _synchronize(device)
        start = timer()
        outputs[name] = run()
        _synchronize(device)
        warmup[name] = timer() - start
        if "fp32" in warmup and name != "fp32" and warmup[name] > WARMUP_DROP_FACTOR * warmup["fp32"]:
            dropped[name] = f"{warmup[name] / warmup['fp32']:.1f}× slower than fp32 (warm-up)"
            samples[name].append(warmup[name])
    for round_index in range(rounds):
        for name, run in candidates.items():
            if name in dropped:
                continue
            _synchronize(device)
            start = timer()
            outputs[name] = run()
            _synchronize(device)
            samples[name].append(timer() - start)
        if round_index == 0 and "fp32" in samples:
            for name in candidates:
                if name != "fp32" and name not in dropped and samples[name][0] > DROP_FACTOR * samples["fp32"][0]:
                    dropped[name] = f"{samples[name][0] / samples['fp32'][0]:.1f}× slower than fp32"
    return {name: statistics.median(s) for name, s in samples.items()}, outputs, dropped


def conv_slowdown(precision: str, device: torch.device, timer: Callable[[], float] = time.perf_counter) -> float:
    """How many times slower one 3×3 convolution (64 → 64 channels on 1×64×56×56,
    channels_last: a ResNet's first stage) runs under ``precision``'s autocast than in
    fp32 on ``device``: the fastest of 6 calls each, the two precisions interleaved after
    a warm-up, a few milliseconds. The minimum, not the median: on a shared machine a
    call is only ever slowed by others, and a screen misled by one busy moment would be
    cached as this machine's decision."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, 64, 56, 56, generator=generator).to(device).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(64, 64, 3, 3, generator=generator).to(device).contiguous(memory_format=torch.channels_last)
    dtype = precision_dtype(precision)

    def once(cast: torch.dtype | None) -> float:
        with torch.no_grad(), torch.autocast(device.type, dtype=cast, enabled=cast is not None):
            _synchronize(device)
            start = timer()
            torch.nn.functional.conv2d(x, weight, padding=1)
            _synchronize(device)
            return timer() - start

    once(dtype), once(None)  # warm-up: oneDNN builds each primitive on its first call
    reduced, full = [], []
    for _ in range(6):
        reduced.append(once(dtype))
        full.append(once(None))
    return min(reduced) / max(min(full), 1e-9)


def choose_precision(
    kind: str,
    device: torch.device,
    signature: Mapping[str, Any],
    probe: list[int],
    build_candidates: Callable[[list[str]], Mapping[str, Callable[[], torch.Tensor]]],
    *,
    reference: Callable[[], torch.Tensor] | None = None,
    timer: Callable[[], float] = time.perf_counter,
    use_cache: bool = True,
    screen: Callable[[str, torch.device], float] | None = conv_slowdown,
) -> PrecisionChoice:
    """Resolve ``auto`` for one model on ``device``: from the cache, or by timing.

    Args:
        kind: ``infer`` or ``train``.
        signature: the model's (:func:`model_signature`); part of the cache key.
        probe: the probe input's shape; part of the cache key (the shape class).
        build_candidates: given precision names (fp32 first), returns name → a callable
            that runs the probe once that way and returns its output (logits for
            inference, the loss for a training step). Called only on a cache miss.
        reference: inference only: the plain fp32 model's logits on the probe, against
            which labels must agree.
        timer: the clock (tests pass a fake one).
        use_cache: read and write the per-machine cache.
        screen: on the CPU, ``screen(precision, device)`` → how many times slower than
            fp32 one convolution runs in that precision (:func:`conv_slowdown`); above
            :data:`SCREEN_FACTOR` the precision is rejected without running the model.
            ``None`` skips it.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    names = candidate_precisions(device)
    if len(names) == 1:
        return PrecisionChoice(names[0], "only candidate", probe=list(probe))
    key = cache_key(kind, device, signature, probe)
    if use_cache:
        cached = cached_choice(key)
        if cached is not None:
            log.info("precision %s: %s", kind, cached.summary())
            return cached
    screened: dict[str, str] = {}
    if screen is not None and device.type == "cpu":
        for name in names[1:]:
            slowdown = screen(name, device)
            if slowdown > SCREEN_FACTOR:
                screened[name] = f"a 3×3 convolution runs {slowdown:.1f}× slower than in fp32 here (not native)"
        names = [name for name in names if name not in screened]
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        candidates = build_candidates(names)
        timings, outputs, rejected = measure(candidates, device=device, timer=timer)
        reference_output = reference() if reference is not None else None
    rejected.update(screened)
    agreement: dict[str, float] = {}
    for name, output in outputs.items():
        if not torch.isfinite(output.float()).all():
            rejected[name] = "non-finite output"
        elif reference_output is not None:
            agreement[name] = label_agreement(reference_output, output)
            if agreement[name] < MIN_AGREEMENT and name != "fp32":
                rejected[name] = f"labels agree on {100 * agreement[name]:.2f} % < {100 * MIN_AGREEMENT:.1f} %"
    chosen = "fp32"
    for name in sorted(timings, key=timings.get):
        if name in rejected:
            continue
        if name == "fp32" or timings[name] * MIN_SPEEDUP <= timings["fp32"]:
            chosen = name
            break
        rejected[name] = f"not {MIN_SPEEDUP:.2f}× faster than fp32"
    if "fp32" in rejected:  # fp32 itself broke (non-finite): nothing safer to fall back to
        raise RuntimeError(f"the fp32 probe of this model gave {rejected['fp32']}")
    choice = PrecisionChoice(
        chosen, "measured", timings=timings, agreement=agreement, rejected=rejected, probe=list(probe)
    )
    log.info("precision %s: %s", kind, choice.summary())
    if use_cache:
        store_choice(key, choice)
    return choice
