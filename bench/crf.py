"""DeepLab's dense CRF (atrous.inference.crf): its cost per image, and what it does to a trained model.

    python bench/crf.py [--repeats 5] [--threads N]                 # (a) timing only
    python bench/crf.py --run RUN_DIR [--crf deeplab_v2 ...] [--split val] [--no-timing]

(a) Timing: ``dense_crf`` on one 360×480 picture (a CamVid one from $ATROUS_DATA when
present, else a synthetic picture with edges) with 11 smooth random class maps, 10
mean-field iterations, for each preset; the median of --repeats runs (after one warm-up),
split into building the lattices and iterating. torch uses every core the process may run
on unless --threads says otherwise. Where pydensecrf2 is installed, Krähenbühl's C++
implementation is timed on the same input for reference. The CPU model (lscpu) and whether
it has AMX are printed above the table.

(b) Accuracy (``--run``): the run's best model on its config's evaluation split (or
--split), evaluated as ``atrous eval`` evaluates it (the same inference path, precision,
test-time settings and tiles), once without the CRF and once per --crf preset on the same
forward passes: mIoU, per-class IoU, pixel accuracy, and the trimap boundary accuracy of
DeepLab v1 (after Kohli et al. 2009) — the pixel accuracy within a band of d ∈ {2, 4, 8}
pixels around the ground truth's label boundaries, as ``atrous eval --report`` computes it
(:func:`atrous.metrics.boundary.trimap_counts`; docs/evaluation.md).

Both parts print markdown tables.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
TRIMAP_WIDTHS = (2, 4, 8)


# -- the machine ---------------------------------------------------------------------------


def cpu_description() -> tuple[str, bool]:
    """(CPU model as lscpu names it, whether its flags include AMX)."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return platform.processor() or platform.machine(), False
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    flags = fields.get("Flags", "").split()
    return fields.get("Model name", platform.machine()), any(flag.startswith("amx") for flag in flags)


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# -- (a) timing ------------------------------------------------------------------------------


def timing_input(height: int = 360, width: int = 480, classes: int = 11, seed: int = 0):
    """(probabilities (classes, H, W) float32, image (3, H, W) uint8, where the image is from)."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.randn(1, classes, height // 16 + 2, width // 16 + 2, generator=generator) * 3
    logits = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)
    probabilities = logits.softmax(1)[0].contiguous()
    data = Path(os.environ.get("ATROUS_DATA", ROOT.parent / "shared" / "data")) / "camvid"
    for split in ("val", "train"):
        files = sorted((data / split).glob("*.png")) if (data / split).is_dir() else []
        if files:
            from PIL import Image

            picture = Image.open(files[0]).convert("RGB").resize((width, height), Image.BILINEAR)
            image = torch.from_numpy(np.array(picture)).permute(2, 0, 1).contiguous()
            return probabilities, image, f"CamVid {split}/{files[0].name}"
    yy, xx = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    image = torch.stack([(xx * 255 // width), (yy * 255 // height), ((xx // 40 + yy // 40) % 2) * 200]).to(torch.uint8)
    return probabilities, image, "synthetic (gradients and squares)"


@dataclass
class Timing:
    preset: str
    build_ms: float
    iterate_ms: float
    total_ms: float
    reference_ms: float | None = None
    agreement: float | None = None


def time_crf(probabilities: torch.Tensor, image: torch.Tensor, preset: str, repeats: int = 5) -> Timing:
    """Median milliseconds of building the CRF (lattices) and of its iterations, and their sum
    timed as one call; with pydensecrf2, its time and the label agreement with it."""
    from atrous.inference.crf import PRESETS, DenseCRF, dense_crf

    params = PRESETS[preset]
    dense_crf(probabilities, image, params)  # warm-up
    builds, iterations, totals = [], [], []
    for _ in range(repeats):
        start = time.perf_counter()
        crf = DenseCRF(probabilities, image, params)
        built = time.perf_counter()
        q = crf.run()
        done = time.perf_counter()
        builds.append(built - start)
        iterations.append(done - built)
        start = time.perf_counter()
        dense_crf(probabilities, image, params)
        totals.append(time.perf_counter() - start)
    timing = Timing(preset, *(1000 * statistics.median(values) for values in (builds, iterations, totals)))
    reference = reference_crf(probabilities, image, params, repeats)
    if reference is not None:
        timing.reference_ms, labels = reference
        timing.agreement = float((q.argmax(0).numpy() == labels).mean())
    return timing


def reference_crf(probabilities, image, params, repeats: int):
    """(median ms, labels) of pydensecrf2 on the same input, or None where it is not installed."""
    try:
        import pydensecrf.densecrf as dcrf
    except ImportError:
        return None
    classes, height, width = probabilities.shape
    unary = np.ascontiguousarray(-np.log(np.clip(probabilities.numpy(), 1e-5, 1.0)).reshape(classes, -1))
    rgb = np.ascontiguousarray(image.permute(1, 2, 0).numpy())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        crf = dcrf.DenseCRF2D(width, height, classes)
        crf.setUnaryEnergy(unary)
        crf.addPairwiseGaussian(sxy=params.pos_xy_std, compat=params.pos_w)
        crf.addPairwiseBilateral(sxy=params.bi_xy_std, srgb=params.bi_rgb_std, rgbim=rgb, compat=params.bi_w)
        q = np.array(crf.inference(params.iterations))
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times), q.reshape(classes, height, width).argmax(0)


def timing_table(timings: list[Timing]) -> str:
    lines = [
        "| preset | build (ms) | 10 iterations (ms) | dense_crf total (ms) | pydensecrf2 (ms) | labels = pydensecrf2 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for t in timings:
        reference = "—" if t.reference_ms is None else f"{t.reference_ms:.0f}"
        agreement = "—" if t.agreement is None else f"{100 * t.agreement:.2f} %"
        lines.append(
            f"| {t.preset} | {t.build_ms:.0f} | {t.iterate_ms:.0f} | {t.total_ms:.0f} | {reference} | {agreement} |"
        )
    return "\n".join(lines)


# -- (b) accuracy ----------------------------------------------------------------------------


@dataclass
class Trimap:
    """Correct and scored pixels within each band width, summed over images: the trimap
    accuracy of ``atrous eval --report`` (:func:`atrous.metrics.boundary.trimap_counts`)."""

    widths: tuple[int, ...] = TRIMAP_WIDTHS
    correct: np.ndarray = field(init=False)
    counted: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.correct = np.zeros(len(self.widths), dtype=np.int64)
        self.counted = np.zeros(len(self.widths), dtype=np.int64)

    def update(self, labels: torch.Tensor, mask: torch.Tensor, ignore_index: int) -> None:
        from atrous.metrics.boundary import trimap_counts

        hits, scored = trimap_counts(labels, mask, self.widths, ignore_index=ignore_index)
        self.correct += hits
        self.counted += scored

    def accuracy(self, width: int) -> float:
        i = self.widths.index(width)
        return float(self.correct[i]) / max(1, int(self.counted[i]))


def evaluate_with_and_without_crf(run_dir: Path, presets: list[str], split: str | None, device: str, precision: str):
    """Per setting ("none", then each preset): (ConfusionMatrix, Trimap), the class names and
    the description of how the model ran."""
    from torch.utils.data import DataLoader

    from atrous.config import load_config
    from atrous.data.constants import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD
    from atrous.engine.evaluator import uint8_pictures
    from atrous.engine.tasks.semantic import build_eval_dataset
    from atrous.inference import inference_path, load_inference_model
    from atrous.inference.crf import PRESETS, refine_with_crf
    from atrous.inference.tta import predict_batch, predict_windows, returns_probabilities
    from atrous.metrics import ConfusionMatrix
    from atrous.runtime import resolve_device

    config = load_config(run_dir / "config.yaml", [])
    dev = resolve_device(device)
    model = load_inference_model(run_dir, precision).to(dev)
    if config.eval.output_stride:
        model.set_output_stride(config.eval.output_stride)
    path = inference_path(model.eval(), dev, precision)
    dataset = build_eval_dataset(config, split)
    scales, flip, tile = list(config.eval.scales), config.eval.flip, config.eval.tile
    settings = ["none", *presets]
    results = {s: (ConfusionMatrix(model.num_classes, device=dev), Trimap()) for s in settings}
    seconds = dict.fromkeys(presets, 0.0)
    with torch.inference_mode():
        for images, masks in DataLoader(dataset, batch_size=1, num_workers=0):
            images, masks = images.to(dev), masks.to(dev)
            if tile is None:
                scores = predict_batch(path, images, scales=scales, flip=flip)
                labels = scores.argmax(1)
            else:
                labels, scores = predict_windows(
                    path,
                    images,
                    tile=tile,
                    overlap=config.eval.tile_overlap,
                    scales=scales,
                    flip=flip,
                    keep_scores=True,
                )
            outputs = {"none": labels.long()}
            rgb = uint8_pictures(images, IMAGENET_MEAN, IMAGENET_STD)
            for preset in presets:
                start = time.perf_counter()
                refined = refine_with_crf(
                    scores, rgb, PRESETS[preset], probabilities=returns_probabilities(scales, flip)
                )
                seconds[preset] += time.perf_counter() - start
                outputs[preset] = refined.argmax(1)
            for setting, predicted in outputs.items():
                matrix, trimap = results[setting]
                matrix.update(predicted, masks)
                trimap.update(predicted[0].cpu(), masks[0].cpu(), IGNORE_INDEX)
    names = list(getattr(dataset, "class_names", [str(i) for i in range(model.num_classes)]))
    how = (
        f"model {run_dir}  split {split or config.data.val_split} ({len(dataset)} images)  scales {scales}  "
        f"flip {flip}  tiles {tile}  precision {path.precision}"
    )
    per_image = {preset: 1000 * s / max(1, len(dataset)) for preset, s in seconds.items()}
    return results, names, how, per_image


def accuracy_table(results, names: list[str]) -> str:
    head = ["CRF", "mIoU", *[f"IoU {n}" for n in names], "pixel acc.", *[f"trimap {w} px" for w in TRIMAP_WIDTHS]]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for setting, (matrix, trimap) in results.items():
        metrics = matrix.compute()
        row = [
            setting,
            f"{100 * metrics.miou:.2f}",
            *[f"{100 * float(v):.2f}" for v in metrics.iou],
            f"{100 * metrics.pixel_accuracy:.2f}",
            *[f"{100 * trimap.accuracy(w):.2f}" for w in TRIMAP_WIDTHS],
        ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="a trained semantic run folder: accuracy with and without the CRF")
    parser.add_argument(
        "--crf", nargs="+", default=["deeplab_v2"], help="presets to evaluate with --run (default deeplab_v2)"
    )
    parser.add_argument("--split", help="dataset split for --run (default: the config's evaluation split)")
    parser.add_argument("--device", default="cpu", help="device for --run (default cpu)")
    parser.add_argument("--precision", default="auto", help="as atrous eval's --precision (default auto)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per preset (default 5)")
    parser.add_argument("--threads", type=int, help="torch threads (default: every core this process may use)")
    parser.add_argument("--no-timing", action="store_true", help="skip the timing part")
    args = parser.parse_args(argv)

    from atrous.inference.crf import PRESETS

    unknown = [p for p in args.crf if p not in PRESETS]
    if unknown:
        parser.error(f"--crf: unknown preset {unknown[0]!r} (choose from {', '.join(PRESETS)})")
    torch.set_num_threads(args.threads or available_cores())
    model_name, amx = cpu_description()
    print(
        f"CPU: {model_name}; AMX: {'yes' if amx else 'no'}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; Python {sys.version.split()[0]}"
    )
    if not args.no_timing:
        probabilities, image, source = timing_input()
        print(
            f"\n(a) dense_crf on one 360×480 picture ({source}), 11 classes, 10 iterations, median of {args.repeats}:\n"
        )
        timings = [
            time_crf(probabilities, image, preset, args.repeats) for preset in ("deeplab_v2", "deeplab_largefov")
        ]
        print(timing_table(timings))
    if args.run is not None:
        results, names, how, per_image = evaluate_with_and_without_crf(
            args.run, args.crf, args.split, args.device, args.precision
        )
        print(f"\n(b) {how}; CRF time per image: " + ", ".join(f"{p} {ms:.0f} ms" for p, ms in per_image.items()))
        print()
        print(accuracy_table(results, names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
