"""Does the fast training step train like full fp32? Three real runs' loss curves, compared.

    python bench/train_curve.py [--steps 40] [--window 5] [--config PATH] [--set key=value ...] [--json]

The fast step is what the Trainer does by default (``train.amp=auto``): bf16 autocast
where it measures faster than fp32 on this machine (see ``precision`` in the output;
where it does not, (b) differs from (a) only in layout), channels_last activations, the
fused optimiser step and the tap form of atrous convolutions where it is faster. bf16 rounds
every product to 8 bits of mantissa, so its loss curve cannot equal fp32's; the claim is
that it matches fp32 *within noise*, defined here as follows. The real Trainer runs three
times on the same data for --steps steps, the seed S being ``train.seed``:

    (a) fp32       train.amp=off,  train.channels_last=false, seed S
    (b) fast       train.amp=auto, train.channels_last=true,  seed S
    (c) fp32 S+1   as (a) with seed S+1: another initialisation and another data order

(a) and (b) start from the same weights and see the same batches: the Trainer seeds
everything before it builds the model, nothing that depends on amp or channels_last runs
before that (the model is converted to channels_last after it is initialised), and every
batch is fixed by the seed alone (``ResumableBatchSampler`` draws epoch ``e``'s order from
``seed + e``, ``KeyedAugmentation`` draws each sample's augmentation from ``(seed, key)``).
The script checks this rather than trusting it: it hashes each run's initial state dict
and every batch it trains on. What (a) and (b) do not share are the dropout masks (ASPP's
dropout after the projection, p=0.1): the same random draws are laid out in memory order,
so a channels_last activation gets a different mask; that is part of the fast step.

Each per-step training loss (logged at every step to metrics.jsonl) is smoothed with a
trailing moving average of --window steps (fewer at the start), and the curves are
compared by their mean absolute difference over all steps. (c) − (a) is the spread that
changing only the seed causes, the noise floor of any single run; the fast step is
**within noise** when

    mean |a − b|  ≤  mean |a − c|

i.e. switching to the fast step moves the curve less than re-running fp32 with another
seed does. The script reports both means, their ratio (PASS when ≤ 1), and each run's mean
seconds per step after the first (the first includes worker start-up, oneDNN kernel
selection and the tap-versus-direct timing) with the speed-up a/b.

Defaults: configs/deeplabv3plus_resnet50_os16_camvid.yaml with model.name=deeplabv3_resnet50
(output stride 16) and bench/camvid.py's CPU sizes (256×256 crops, batch 4, 2 loader
workers), SGD at the recipe's 0.01 with a warm-up of steps/20. The schedule is laid over
steps + 1 and each run is stopped after --steps steps, before the evaluation and the
checkpoint that the Trainer does at its last step; nothing is evaluated. Run folders go to
a temporary directory, deleted afterwards. Note that all three runs use the fused
optimiser and the tap form (the Trainer uses them on a CPU whatever the precision): what
(a) and (b) differ in is bf16 autocast and channels_last, and which convolutions the
per-shape timing hands to the tap form in each precision.
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ itself, also when loaded by path
from _trainer_runs import (
    CPU_OVERRIDES,
    UNTIMED,
    StopRun,
    data_overrides,
    recipe_parser,
    release,
    run_until_stopped,
)

from atrous.config import Config, load_config
from atrous.engine.trainer import Trainer
from atrous.layers import tap_conv

DEFAULT_MODEL = "deeplabv3_resnet50"
# (name, amp, channels_last, seed offset): the three runs of the module docstring.
RUNS = (
    ("fp32", "off", False, 0),
    ("fast", "auto", True, 0),
    ("fp32_seed+1", "off", False, 1),
)


class _HashedLoader:
    """Wraps the training loader; hashes every batch it yields (images, masks, weight maps)."""

    def __init__(self, loader: Iterable) -> None:
        self.loader = loader
        self.digest = hashlib.sha256()
        self.batches = 0

    def __iter__(self) -> Iterator:
        for batch in self.loader:
            for tensor in batch:
                self.digest.update(tensor.contiguous().numpy().tobytes())
            self.batches += 1
            yield batch


def state_hash(model: torch.nn.Module) -> str:
    """SHA-256 of a model's state dict, independent of its memory format."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def moving_average(values: list[float], window: int) -> list[float]:
    """Trailing mean over the last ``window`` values (fewer at the start): same length as ``values``."""
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def mean_abs_diff(a: list[float], b: list[float]) -> float:
    return sum(abs(x - y) for x, y in zip(a, b, strict=True)) / len(a)


def _run_config(config: Config, *, steps: int, amp: str, channels_last: bool, seed: int) -> Config:
    """``config`` for one curve: log every step; no eval, checkpoint or time limit before the stop."""
    never = 10**9
    train = dataclasses.replace(
        config.train,
        steps=steps + 1,  # stopped after `steps`, before the last step's evaluation and checkpoint
        **UNTIMED,
        eval_every=never,
        checkpoint_every=never,
        log_every=1,
        progress=False,
        amp=amp,
        channels_last=channels_last,
        seed=seed,
    )
    return dataclasses.replace(config, train=train)


def train_curve(config: Config, steps: int, run_dir: Path) -> dict[str, Any]:
    """Train ``steps`` steps with the real Trainer; the per-step losses, timings and hashes."""
    trainer = Trainer(config, run_dir)
    init_sha = state_hash(trainer.model)
    hashed = _HashedLoader(trainer.train_loader)
    trainer.train_loader = hashed  # type: ignore[assignment]
    marks: list[float] = []

    def mark(trainer: Trainer, step: int) -> None:
        if trainer.device.type == "cuda":
            torch.cuda.synchronize(trainer.device)
        marks.append(time.perf_counter())
        if step == steps:
            raise StopRun

    choices_before = set(tap_conv._choices)
    start = run_until_stopped(trainer, mark)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    losses = [r["loss"] for r in records if r.get("kind") == "train"]
    if len(losses) != steps or len(marks) != steps:
        raise RuntimeError(f"the run logged {len(losses)} losses in {len(marks)} steps; expected {steps}")
    # Tap-versus-direct choices timed in this run (a later run with the same shapes reuses them).
    new = {k: v for k, v in tap_conv._choices.items() if k not in choices_before and k[4]}
    dtype = trainer.autocast_dtype
    result = {
        "amp": {None: "off", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype],
        "channels_last": bool(config.train.channels_last),
        "seed": config.train.seed,
        "fused_optimizer": bool(trainer.optimizer.defaults.get("fused")),
        "tap_convs": sum(isinstance(m, tap_conv.TapConv2d) for m in trainer.model.modules()),
        "tap_shapes_chosen": f"{sum(new.values())}/{len(new)}",
        "init_sha": init_sha[:16],
        "data_sha": hashed.digest.hexdigest()[:16],
        "batches": hashed.batches,
        "first_step_s": marks[0] - start,
        "step_s": (marks[-1] - marks[0]) / (steps - 1),
        "loss": losses,
    }
    release(trainer)
    del trainer, hashed
    gc.collect()
    return result


def compare(config: Config, *, steps: int, window: int = 5, run_dir: str | os.PathLike) -> dict[str, Any]:
    """Run the three curves of the module docstring and compare them.

    Args:
        config: the resolved configuration; its ``train.seed`` is S. Its schedule, logging,
            eval and checkpoint settings, amp, channels_last and seed are set per run.
        steps: training steps per run (at least 2: the time per step leaves out the first).
        window: the moving average's window, in steps.
        run_dir: a scratch folder for the three run folders.

    Returns:
        ``runs`` (per run: settings, hashes, timings, raw and smoothed losses) and the
        verdict: ``mean_abs_ab``, ``mean_abs_ac``, ``ratio``, ``within_noise``, ``speedup``.
    """
    if steps < 2 or window < 1:
        raise ValueError(f"--steps must be >= 2 and --window >= 1, got {steps} and {window}")
    run_dir = Path(run_dir)
    seed = config.train.seed
    runs: dict[str, dict[str, Any]] = {}
    for name, amp, channels_last, offset in RUNS:
        run_config = _run_config(config, steps=steps, amp=amp, channels_last=channels_last, seed=seed + offset)
        runs[name] = train_curve(run_config, steps, run_dir / name)
        runs[name]["smoothed"] = moving_average(runs[name]["loss"], window)
    a, b, c = (runs[name] for name, *_ in RUNS)
    ab = mean_abs_diff(a["smoothed"], b["smoothed"])
    ac = mean_abs_diff(a["smoothed"], c["smoothed"])
    ratio = ab / ac if ac > 0 else (math.inf if ab > 0 else 1.0)
    return {
        "model": config.model.name,
        "output_stride": config.model.output_stride,
        "dataset": config.data.dataset,
        "crop_size": list(config.data.crop_size),
        "batch_size": config.data.batch_size,
        "workers": config.data.workers,
        "lr": config.train.lr,
        "warmup_steps": config.train.warmup_steps,
        "threads": torch.get_num_threads(),
        "steps": steps,
        "window": window,
        "seed": seed,
        "runs": runs,
        "same_init_ab": a["init_sha"] == b["init_sha"],
        "same_batches_ab": a["data_sha"] == b["data_sha"],
        "other_init_c": c["init_sha"] != a["init_sha"],
        "other_batches_c": c["data_sha"] != a["data_sha"],
        "mean_abs_ab": ab,
        "mean_abs_ac": ac,
        "ratio": ratio,
        "within_noise": ab <= ac,
        "speedup": a["step_s"] / b["step_s"],
    }


def format_table(r: dict[str, Any]) -> str:
    crop = "×".join(str(s) for s in r["crop_size"])
    names = [name for name, *_ in RUNS]
    runs = [r["runs"][n] for n in names]
    lines = [
        f"{r['model']} (output stride {r['output_stride']}) on {r['dataset']}: batch {r['batch_size']}, crop {crop}, "
        f"{r['workers']} loader workers, {r['threads']} threads, lr {r['lr']:g} (warm-up {r['warmup_steps']}), "
        f"{r['steps']} steps, moving average of {r['window']}",
        "",
        f"{'step':>4}  " + "  ".join(f"{n:>11}" for n in names) + "  │ " + "  ".join(f"{n:>11}" for n in names),
        f"{'':>4}  {'loss':^37}  │ {'smoothed':^37}",
    ]
    for i in range(r["steps"]):
        raw = "  ".join(f"{run['loss'][i]:11.4f}" for run in runs)
        smooth = "  ".join(f"{run['smoothed'][i]:11.4f}" for run in runs)
        lines.append(f"{i + 1:>4}  {raw}  │ {smooth}")
    lines.append("")
    for name, run in zip(names, runs, strict=True):
        lines.append(
            f"  {name:<12} amp {run['amp']:<4} channels_last {'on ' if run['channels_last'] else 'off'} "
            f"seed {run['seed']}  fused {'on' if run['fused_optimizer'] else 'off'}  "
            f"taps chosen {run['tap_shapes_chosen']:>5}  init {run['init_sha']}  data {run['data_sha']}  "
            f"{run['step_s']:.3f} s/step (first step {run['first_step_s']:.2f} s)"
        )
    same = "yes" if r["same_init_ab"] and r["same_batches_ab"] else "NO"
    other = "yes" if r["other_init_c"] and r["other_batches_c"] else "NO"
    verdict = "PASS" if r["within_noise"] else "FAIL"
    lines += [
        f"  fp32 and fast start from the same weights and see the same batches: {same}; "
        f"seed+1 differs in both: {other}",
        f"  mean |fp32 − fast|        {r['mean_abs_ab']:.4f}",
        f"  mean |fp32 − fp32 seed+1| {r['mean_abs_ac']:.4f}",
        f"  ratio                     {r['ratio']:.3f}   (≤ 1: within noise) {verdict}",
        f"  speed-up fp32 → fast      {r['speedup']:.2f}×  "
        f"({r['runs']['fp32']['step_s']:.3f} → {r['runs']['fast']['step_s']:.3f} s/step)",
    ]
    return "\n".join(lines)


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 5) if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def main() -> None:
    parser = recipe_parser(__doc__)
    parser.add_argument("--steps", type=int, default=40, help="training steps per run (default 40)")
    parser.add_argument("--window", type=int, default=5, help="moving-average window in steps (default 5)")
    args = parser.parse_args()

    overrides = [f"model.name={DEFAULT_MODEL}", *CPU_OVERRIDES, f"train.warmup_steps={max(1, args.steps // 20)}"]
    overrides += data_overrides(args.config, args.overrides)
    config = load_config(args.config, [*overrides, *args.overrides])

    with tempfile.TemporaryDirectory(prefix="bench_train_curve_") as run_dir:
        result = compare(config, steps=args.steps, window=args.window, run_dir=run_dir)
    print(json.dumps(_rounded(result)) if args.json else format_table(result))


if __name__ == "__main__":
    main()
