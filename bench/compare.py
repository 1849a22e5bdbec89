"""atrous side by side with torchvision and segmentation_models_pytorch, in one process.

    uv run --extra bench python bench/compare.py [--pairs deeplabv3,deeplabv3plus,pspnet,unet]
        [--repeats 7] [--weights RUN_DIR] [--agreement-images 16] [--compile] [--json FILE]
        [--isa AVX2,AVX512_CORE,AVX512_CORE_BF16,native] [--device cuda]

``--isa`` runs the whole comparison once per oneDNN ISA cap (``ONEDNN_MAX_CPU_ISA``), each in
a subprocess, so one machine measures the CPU classes below it (AVX2 only; AVX-512 without
bf16; AVX-512 BF16 without AMX; ``native``: uncapped) and prints one row per class.
``--device cuda`` times the deeplabv3 pair on the GPU instead: torchvision in fp32, TF32,
bf16 and fp16 autocast and ``torch.compile``, against atrous's default path there.

For each pair, every contender runs the same input in turn (interleaved rounds, so a slow
moment of a shared machine lands on all of them) and the medians are compared:

* **inference**, 1×3×512×512: the reference model eager in float32 (what its README
  shows), the reference with bf16 autocast + channels_last where the hardware has native
  bf16 (its best eager configuration), optionally ``torch.compile`` with freezing (the
  reference's best; ``--compile``, minutes of compilation), the atrous model eager in
  float32 (the same architecture, as built), and **atrous's default inference path**
  (what ``atrous predict`` runs: conv-BN folded, channels_last, atrous convolutions as
  shifted 1×1 products where faster, fp32 or bf16 as measured on this machine), and with
  ``--weights RUN`` whose ``RUN/int8`` exists (``atrous quantize RUN``), the int8 model. The
  default path's GFLOP/s is set against the best fp32 ceiling (NCHW or channels_last)
  measured in the same run.
* **training step**, 2×3×256×256, cross-entropy, SGD momentum 0.9: a plain PyTorch loop
  on the reference model (float32, NCHW, the default optimiser implementation) against
  **atrous's training step** (what ``atrous train`` runs: ``amp=auto`` — bf16 where
  measured faster —, channels_last, the fused optimiser, the tap form of atrous
  convolutions), and the same step with ``amp=off``.

Pairs (same weights where the modules are the same):

* ``deeplabv3``: atrous ``deeplabv3_resnet50`` at output stride 8 vs torchvision
  ``deeplabv3_resnet50`` — identical architecture; torchvision's weights are loaded
  into atrous, so the logits agree and the label agreement of the two paths is measured
  (on a trained model with ``--weights``: an atrous run folder of ``deeplabv3_resnet50``,
  evaluated on CamVid validation images scaled by 1.5 and centre-cropped to 512×512).
* ``deeplabv3plus``: atrous ``deeplabv3plus_resnet50`` (OS 16) vs
  ``smp.DeepLabV3Plus("resnet50")`` (OS 16): same encoder weights; the heads differ
  (smp's ASPP branches are depthwise separable), so parameters and GFLOPs are shown.
* ``pspnet``: atrous ``pspnet_resnet50`` (the paper's dilated ResNet at OS 8) vs
  ``smp.PSPNet("resnet50")`` (smp's default: the encoder cut after its second stage,
  OS 8): different networks — compare the images/s with the GFLOPs beside them.
* ``unet``: atrous ``unet_padded`` (the paper's U-Net with same-padding) vs
  ``smp.Unet("vgg13_bn")`` (the closest smp encoder: two 3×3 convolutions per stage):
  different networks, as above.

segmentation_models_pytorch is a bench-only dependency (``uv sync --extra bench``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
INFER_SHAPE = (1, 3, 512, 512)
TRAIN_SHAPE = (2, 3, 256, 256)
NUM_CLASSES = 21
PAIRS = ("deeplabv3", "deeplabv3plus", "pspnet", "unet")


def _logits(output) -> torch.Tensor:
    return output["out"] if isinstance(output, dict) else output


def build_pair(pair: str) -> tuple[nn.Module, nn.Module, str, str]:
    """(atrous model, reference model, atrous name, reference name), weights shared where possible."""
    from atrous.models import create_model

    torch.manual_seed(0)
    if pair == "deeplabv3":
        from torchvision.models.segmentation import deeplabv3_resnet50

        reference = deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=NUM_CLASSES, aux_loss=False)
        ours = create_model("deeplabv3_resnet50", num_classes=NUM_CLASSES, output_stride=8)
        ours.load_state_dict(reference.state_dict())  # strict: the same architecture, name for name
        return ours, reference, "atrous deeplabv3_resnet50 (OS 8)", "torchvision deeplabv3_resnet50"
    import segmentation_models_pytorch as smp

    if pair == "deeplabv3plus":
        ours = create_model("deeplabv3plus_resnet50", num_classes=NUM_CLASSES, output_stride=16)
        reference = smp.DeepLabV3Plus("resnet50", encoder_weights=None, classes=NUM_CLASSES, encoder_output_stride=16)
        reference.encoder.load_state_dict(ours.backbone.state_dict())
        return ours, reference, "atrous deeplabv3plus_resnet50", "smp DeepLabV3Plus(resnet50)"
    if pair == "pspnet":
        ours = create_model("pspnet_resnet50", num_classes=NUM_CLASSES)
        reference = smp.PSPNet("resnet50", encoder_weights=None, classes=NUM_CLASSES)
        reference.encoder.load_state_dict(ours.backbone.state_dict(), strict=False)  # smp keeps layers 1–2 only
        return ours, reference, "atrous pspnet_resnet50", "smp PSPNet(resnet50)"
    if pair == "unet":
        ours = create_model("unet_padded", num_classes=NUM_CLASSES)
        reference = smp.Unet("vgg13_bn", encoder_weights=None, classes=NUM_CLASSES)
        return ours, reference, "atrous unet_padded", "smp Unet(vgg13_bn)"
    raise ValueError(f"unknown pair {pair!r}; choose from {', '.join(PAIRS)}")


def plain_inference(model: nn.Module, x: torch.Tensor) -> Callable[[], torch.Tensor]:
    model = model.eval()

    def run() -> torch.Tensor:
        with torch.inference_mode():
            return _logits(model(x))

    return run


def autocast_inference(model: nn.Module, x: torch.Tensor, dtype: torch.dtype) -> Callable[[], torch.Tensor]:
    model = model.eval().to(memory_format=torch.channels_last)
    x = x.contiguous(memory_format=torch.channels_last)

    def run() -> torch.Tensor:
        with torch.inference_mode(), torch.autocast("cpu", dtype=dtype):
            return _logits(model(x))

    return run


def compiled_inference(model: nn.Module, x: torch.Tensor, dtype: torch.dtype | None) -> Callable[[], torch.Tensor]:
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True  # constant-fold weights, pre-pack them for oneDNN
    model = model.eval().to(memory_format=torch.channels_last)
    compiled = torch.compile(model)
    x = x.contiguous(memory_format=torch.channels_last)
    autocast = torch.autocast("cpu", dtype=dtype) if dtype is not None else nullcontext()

    def run() -> torch.Tensor:
        with torch.no_grad(), autocast:
            return _logits(compiled(x))

    return run


def plain_train_step(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> Callable[[], torch.Tensor]:
    """The loop a torchvision user writes: float32, NCHW, SGD with the default implementation."""
    model = model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4)

    def step() -> torch.Tensor:
        loss = F.cross_entropy(_logits(model(x)), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step


def _agreement_one(runner: Callable[[torch.Tensor], torch.Tensor], reference: nn.Module, image: torch.Tensor) -> float:
    with torch.inference_mode():
        a = _logits(runner(image)).argmax(1)
        b = _logits(reference.eval()(image)).argmax(1)
    return (a == b).float().mean().item()


def camvid_images(count: int) -> list[torch.Tensor]:
    """CamVid validation images as 512×512 inputs the model could have been trained on:
    scaled by 1.5 (inside the recipe's 0.5–2.0 scale augmentation, aspect kept), centre
    crop, normalised as training normalises."""
    from PIL import Image

    from atrous.data.constants import IMAGENET_MEAN, IMAGENET_STD

    root = Path(os.environ.get("ATROUS_DATA", ROOT.parent / "shared" / "data")) / "camvid" / "val"
    files = sorted(root.glob("*.png"))[:count]
    if not files:
        raise SystemExit(f"no CamVid validation images in {root}; set ATROUS_DATA to the folder holding camvid/")
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    side = INFER_SHAPE[-1]
    images = []
    for path in files:
        rgb = Image.open(path).convert("RGB")
        rgb = rgb.resize((round(rgb.width * 1.5), round(rgb.height * 1.5)), Image.BILINEAR)
        left, top = (rgb.width - side) // 2, (rgb.height - side) // 2
        rgb = rgb.crop((left, top, left + side, top + side))
        x = torch.frombuffer(bytearray(rgb.tobytes()), dtype=torch.uint8).view(1, side, side, 3)
        images.append(((x.permute(0, 3, 1, 2).float() / 255) - mean) / std)
    return images


def load_trained(ours: nn.Module, reference: nn.Module, run_dir: Path) -> None:
    """Weights of a trained atrous deeplabv3_resnet50 into both models (the same names)."""
    from atrous.inference.loading import load_trained_model

    trained = load_trained_model(run_dir)
    state = {k: v for k, v in trained.state_dict().items() if not k.startswith("aux_classifier.")}
    if state["classifier.4.weight"].shape[0] != NUM_CLASSES:
        classes = state["classifier.4.weight"].shape[0]
        ours.classifier[4] = nn.Conv2d(256, classes, 1)
        reference.classifier[4] = nn.Conv2d(256, classes, 1)
    ours.load_state_dict(state)
    reference.load_state_dict(state)


def count_params(model: nn.Module) -> float:
    return sum(p.numel() for p in model.parameters()) / 1e6


def gflops(model: nn.Module, shape) -> float:
    import copy

    from atrous.benchmark import count_flops

    plain = copy.deepcopy(model).eval()
    with torch.no_grad():
        return count_flops(lambda: plain(torch.zeros(shape))) / 1e9


def run_pair(pair: str, args: argparse.Namespace) -> dict:
    import copy

    from atrous.benchmark import conv_ceiling, step_function, time_interleaved
    from atrous.benchmark.timing import median
    from atrous.inference import inference_path

    cpu = torch.device("cpu")
    ours, reference, ours_name, ref_name = build_pair(pair)
    agreement = None
    int8 = None
    if pair == "deeplabv3" and args.weights is not None:
        load_trained(ours, reference, args.weights)
        int8 = load_int8(args.weights)
    classes = _logits(reference.eval()(torch.zeros(1, 3, 64, 64))).shape[1]
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(INFER_SHAPE, generator=generator)

    infer = {f"{ref_name} eager fp32": plain_inference(copy.deepcopy(reference), x)}
    infer[f"{ref_name} bf16 + channels_last"] = autocast_inference(copy.deepcopy(reference), x, torch.bfloat16)
    if args.compile:
        infer[f"{ref_name} compile(freezing) fp32"] = compiled_inference(copy.deepcopy(reference), x, None)
    infer[f"{ours_name} eager fp32"] = plain_inference(copy.deepcopy(ours), x)
    default = step_function(
        copy.deepcopy(ours), mode="infer", precision="auto", device=cpu, batch=1, size=512, num_classes=classes
    )
    default_name = f"{ours_name} default path ({default.precision})"
    infer[default_name] = default.run  # its input: the same seed, the same values as x
    if int8 is not None:
        infer[f"{ours_name} int8 (OpenVINO)"] = plain_inference(int8, x)
    print(f"[{pair}] default path: {default.decision}", flush=True)
    print(f"[{pair}] inference 1×3×512×512: {len(infer)} contenders, {args.repeats} interleaved rounds", flush=True)
    infer_times = time_interleaved(infer, repeats=args.repeats, warmup=args.warmup)
    ceilings = {
        "fp32 NCHW": conv_ceiling(cpu, None, channels_last=False),
        "fp32 channels_last": conv_ceiling(cpu, None, channels_last=True),
    }

    generator.manual_seed(0)  # the data step_function draws for the atrous step
    tx = torch.randn(TRAIN_SHAPE, generator=generator)
    target = torch.randint(0, classes, (TRAIN_SHAPE[0], *TRAIN_SHAPE[2:]), generator=generator)
    train = {f"{ref_name} plain fp32 loop": plain_train_step(copy.deepcopy(reference), tx, target)}
    step_auto = step_function(
        copy.deepcopy(ours), mode="train", precision="auto", device=cpu, batch=2, size=256, num_classes=classes
    )
    step_off = step_function(
        copy.deepcopy(ours), mode="train", precision="fp32", device=cpu, batch=2, size=256, num_classes=classes
    )
    train[f"{ours_name} training step, amp=auto ({step_auto.precision})"] = step_auto.run
    train[f"{ours_name} training step, amp=off"] = step_off.run
    print(f"[{pair}] training amp=auto: {step_auto.decision}", flush=True)
    print(f"[{pair}] training step 2×3×256×256: {args.repeats} interleaved rounds", flush=True)
    train_times = time_interleaved(train, repeats=args.repeats, warmup=args.warmup)

    if pair == "deeplabv3":
        images = camvid_images(args.agreement_images) if args.weights is not None else [x]
        fast = inference_path(copy.deepcopy(ours).eval(), cpu, "auto")
        agreement = {
            "fraction": sum(_agreement_one(fast, reference, im) for im in images) / len(images),
            "images": len(images),
            "weights": str(args.weights) if args.weights is not None else "random (pass --weights for a trained model)",
        }
        if int8 is not None:
            agreement["int8_fraction"] = sum(_agreement_one(int8, reference, im) for im in images) / len(images)
    baseline_infer = median(infer_times[f"{ref_name} eager fp32"])
    baseline_train = median(train_times[f"{ref_name} plain fp32 loop"])
    ours_gflops = gflops(ours, INFER_SHAPE)
    achieved = ours_gflops / median(infer_times[default_name])
    return {
        "pair": pair,
        "atrous": {"name": ours_name, "params_m": count_params(ours), "gflops_512": ours_gflops},
        "reference": {
            "name": ref_name,
            "params_m": count_params(reference),
            "gflops_512": gflops(reference, INFER_SHAPE),
        },
        "default_path": {
            "precision": default.precision,
            "decision": default.decision,
            "gflops_per_s": achieved,
            "share_of_best_fp32_ceiling": achieved / max(ceilings.values()),
        },
        "train_amp_auto": {"precision": step_auto.precision, "decision": step_auto.decision},
        "ceilings_gflops_per_s": ceilings,
        "inference_s": {k: median(v) for k, v in infer_times.items()},
        "inference_speedup_vs_reference_fp32": {k: baseline_infer / median(v) for k, v in infer_times.items()},
        "train_step_s": {k: median(v) for k, v in train_times.items()},
        "train_speedup_vs_plain_loop": {k: baseline_train / median(v) for k, v in train_times.items()},
        "label_agreement": agreement,
    }


def load_int8(run_dir: Path) -> nn.Module | None:
    """The run's int8 model (``atrous quantize RUN``), if it has one."""
    from atrous.inference.loading import INT8_FOLDER, load_inference_model

    if not (run_dir / INT8_FOLDER).is_dir():
        print(f"no {run_dir / INT8_FOLDER}: the int8 contender is skipped (write it with atrous quantize)")
        return None
    if os.environ.get("ONEDNN_MAX_CPU_ISA") == "AVX2":
        # OpenVINO's CPU plugin honours the cap too, and under AVX2 on an AVX-512 machine its
        # int8 kernels crashed the process (SIGSEGV, OpenVINO 2026.4, AMD Zen 4): not timed.
        print("ONEDNN_MAX_CPU_ISA=AVX2: the int8 contender is skipped (OpenVINO crashes under this cap here)")
        return None
    return load_inference_model(run_dir, "int8")


def print_pair(result: dict) -> None:
    a, r = result["atrous"], result["reference"]
    print(f"\n## {result['pair']}")
    print(f"{a['name']}: {a['params_m']:.2f} M params, {a['gflops_512']:.1f} GFLOPs at 512²")
    print(f"{r['name']}: {r['params_m']:.2f} M params, {r['gflops_512']:.1f} GFLOPs at 512²")
    width = max(len(k) for k in [*result["inference_s"], *result["train_step_s"]])
    print(f"{'inference 1×3×512×512':<{width}}  {'median s':>9}  {'× ref fp32':>10}")
    for key, seconds in result["inference_s"].items():
        print(f"{key:<{width}}  {seconds:>9.3f}  {result['inference_speedup_vs_reference_fp32'][key]:>10.2f}")
    print(f"{'training step 2×3×256×256':<{width}}  {'median s':>9}  {'× plain':>10}")
    for key, seconds in result["train_step_s"].items():
        print(f"{key:<{width}}  {seconds:>9.3f}  {result['train_speedup_vs_plain_loop'][key]:>10.2f}")
    d = result["default_path"]
    ceilings = ", ".join(f"{k} {v:,.0f}" for k, v in result["ceilings_gflops_per_s"].items())
    print(f"fp32 ceilings (GFLOP/s): {ceilings}")
    print(
        f"default path ({d['precision']}): {d['gflops_per_s']:,.0f} GFLOP/s = "
        f"{d['share_of_best_fp32_ceiling']:.1%} of the best fp32 ceiling; {d['decision']}"
    )
    if result["label_agreement"] is not None:
        ag = result["label_agreement"]
        print(
            f"label agreement, atrous default path vs reference fp32: {ag['fraction']:.4%} "
            f"({ag['images']} images, {ag['weights']})"
        )
        if "int8_fraction" in ag:
            print(f"label agreement, atrous int8 vs reference fp32: {ag['int8_fraction']:.4%}")


ISA_CLASSES = {
    "AVX2": "AVX2 only",
    "AVX512_CORE": "AVX-512, no bf16",
    "AVX512_CORE_BF16": "AVX-512 BF16, no AMX",
    "AVX512_CORE_AMX": "AMX",
    "native": "this CPU, uncapped",
}


def run_isa_classes(isas: list[str], argv: list[str]) -> list[dict]:
    """The comparison once per ``ONEDNN_MAX_CPU_ISA`` cap, each in its own process (oneDNN
    reads the cap once, at start-up); one summary row per CPU class."""
    import subprocess
    import tempfile

    rows = []
    for isa in isas:
        env = dict(os.environ)
        env.pop("ONEDNN_MAX_CPU_ISA", None)
        if isa != "native":
            env["ONEDNN_MAX_CPU_ISA"] = isa
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "result.json"
            print(f"\n# ONEDNN_MAX_CPU_ISA={isa} ({ISA_CLASSES[isa]})", flush=True)
            subprocess.run([sys.executable, __file__, *argv, "--json", str(out)], env=env, check=True)
            payload = json.loads(out.read_text())
        for result in payload["results"]:
            rows.append({"isa": isa, "class": ISA_CLASSES[isa], **result})
    print("\n## by CPU class (ratios against the reference's eager fp32, same run)")
    print(
        f"{'class':<28} {'pair':<14} {'default':>8} {'× ref fp32':>10} {'int8 ×':>7} {'of fp32 ceil':>12} "
        f"{'train ×':>8} {'auto/off':>8}"
    )
    for row in rows:
        infer = row["inference_speedup_vs_reference_fp32"]
        default = next(v for k, v in infer.items() if "default path" in k)
        int8 = next((f"{v:.2f}" for k, v in infer.items() if "int8" in k), "-")
        train = row["train_step_s"]
        auto = next(v for k, v in train.items() if "amp=auto" in k)
        off = next(v for k, v in train.items() if "amp=off" in k)
        plain = next(v for k, v in train.items() if "plain" in k)
        print(
            f"{row['class']:<28} {row['pair']:<14} {row['default_path']['precision']:>8} {default:>10.2f} "
            f"{int8:>7} {row['default_path']['share_of_best_fp32_ceiling']:>12.1%} {plain / auto:>8.2f} "
            f"{off / auto:>8.2f}"
        )
    return rows


def run_cuda(args: argparse.Namespace) -> dict:
    """The deeplabv3 pair on the GPU: torchvision in fp32, TF32, bf16, fp16 and compiled,
    against atrous's default path there (its precision measured like on the CPU)."""
    import copy

    from atrous.benchmark import step_function, time_interleaved
    from atrous.benchmark.timing import median

    gpu = torch.device("cuda")
    ours, reference, ours_name, ref_name = build_pair("deeplabv3")
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(args.cuda_batch, 3, 512, 512, generator=generator).to(gpu)
    ref = reference.to(gpu).eval()

    def run_ref(dtype=None, tf32=False, channels_last=False, compiled=None):
        model = compiled or ref
        xx = x.contiguous(memory_format=torch.channels_last) if channels_last else x

        def run():
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
            with torch.inference_mode(), torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
                return _logits(model(xx))

        return run

    infer = {
        f"{ref_name} fp32": run_ref(),
        f"{ref_name} TF32": run_ref(tf32=True),
        f"{ref_name} bf16 autocast + channels_last": run_ref(torch.bfloat16, channels_last=True),
        f"{ref_name} fp16 autocast + channels_last": run_ref(torch.float16, channels_last=True),
    }
    if args.compile:
        compiled = torch.compile(copy.deepcopy(ref).to(memory_format=torch.channels_last))
        infer[f"{ref_name} compile + bf16 + channels_last"] = run_ref(
            torch.bfloat16, channels_last=True, compiled=compiled
        )
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    default = step_function(
        copy.deepcopy(ours),
        mode="infer",
        precision="auto",
        device=gpu,
        batch=args.cuda_batch,
        size=512,
        num_classes=NUM_CLASSES,
    )
    infer[f"{ours_name} default path ({default.precision})"] = default.run
    print(f"default path: {default.decision}", flush=True)
    times = time_interleaved(infer, repeats=args.repeats, warmup=args.warmup, device=gpu)
    base = median(times[f"{ref_name} fp32"])
    tx = torch.randn(8, 3, 256, 256, generator=generator).to(gpu)
    target = torch.randint(0, NUM_CLASSES, (8, 256, 256), generator=generator).to(gpu)
    train = {f"{ref_name} plain fp32 loop": plain_train_step(copy.deepcopy(reference).to(gpu), tx, target)}
    step = step_function(
        copy.deepcopy(ours), mode="train", precision="auto", device=gpu, batch=8, size=256, num_classes=NUM_CLASSES
    )
    train[f"{ours_name} training step, amp=auto ({step.precision})"] = step.run
    train_times = time_interleaved(train, repeats=args.repeats, warmup=args.warmup, device=gpu)
    tbase = median(train_times[f"{ref_name} plain fp32 loop"])
    result = {
        "gpu": torch.cuda.get_device_name(gpu),
        "batch": args.cuda_batch,
        "inference_s": {k: median(v) for k, v in times.items()},
        "inference_speedup_vs_fp32": {k: base / median(v) for k, v in times.items()},
        "train_step_8x256_s": {k: median(v) for k, v in train_times.items()},
        "train_speedup_vs_plain_loop": {k: tbase / median(v) for k, v in train_times.items()},
        "default_decision": default.decision,
        "train_decision": step.decision,
    }
    print(f"\n## deeplabv3 on {result['gpu']}, inference {args.cuda_batch}×3×512×512")
    for key, seconds in result["inference_s"].items():
        print(f"{key:<60} {seconds * 1e3:>9.2f} ms {result['inference_speedup_vs_fp32'][key]:>6.2f}×")
    print("training step 8×3×256×256")
    for key, seconds in result["train_step_8x256_s"].items():
        print(f"{key:<60} {seconds * 1e3:>9.2f} ms {result['train_speedup_vs_plain_loop'][key]:>6.2f}×")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", default=",".join(PAIRS), help=f"comma-separated, from {', '.join(PAIRS)}")
    parser.add_argument("--repeats", type=int, default=7, help="interleaved timed rounds (>= 5, default 7)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls per contender first (default 2)")
    parser.add_argument("--weights", type=Path, help="run folder of a trained atrous deeplabv3_resnet50")
    parser.add_argument("--agreement-images", type=int, default=16, help="CamVid val images for the agreement")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile(freezing) references")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument(
        "--isa", help=f"comma-separated oneDNN caps, one subprocess each, from {', '.join(ISA_CLASSES)}"
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="cuda: the deeplabv3 pair on a GPU")
    parser.add_argument("--cuda-batch", type=int, default=8, help="inference batch on the GPU (default 8)")
    args = parser.parse_args(argv)
    if args.isa:
        isas = [i.strip() for i in args.isa.split(",") if i.strip()]
        unknown = [i for i in isas if i not in ISA_CLASSES]
        if unknown:
            parser.error(f"unknown --isa {unknown}; choose from {', '.join(ISA_CLASSES)}")
        forwarded = _without_options(list(sys.argv[1:] if argv is None else argv), ("--isa", "--json"))
        rows = run_isa_classes(isas, forwarded)
        if args.json is not None:
            from atrous.utils.atomic import atomic_write_text

            atomic_write_text(args.json, json.dumps({"torch": torch.__version__, "by_isa": rows}, indent=1))
        return 0
    if args.device == "cuda":
        if not torch.cuda.is_available():
            parser.error("--device cuda but CUDA is not available")
        result = run_cuda(args)
        if args.json is not None:
            from atrous.utils.atomic import atomic_write_text

            atomic_write_text(args.json, json.dumps({"torch": torch.__version__, "cuda": result}, indent=1))
        return 0
    pairs = [p.strip() for p in args.pairs.split(",") if p.strip()]
    for pair in pairs:
        if pair not in PAIRS:
            parser.error(f"unknown pair {pair!r}; choose from {', '.join(PAIRS)}")
    if any(p != "deeplabv3" for p in pairs):
        try:
            import segmentation_models_pytorch  # noqa: F401
        except ImportError:
            parser.error("segmentation_models_pytorch is needed for these pairs: uv sync --extra bench")
    import torchvision

    print(
        f"torch {torch.__version__}, torchvision {torchvision.__version__}, {torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()}, python {sys.version.split()[0]}"
    )
    results = []
    for pair in pairs:
        result = run_pair(pair, args)
        print_pair(result)
        results.append(result)
    if args.json is not None:
        from atrous.utils.atomic import atomic_write_text

        payload = {"torch": torch.__version__, "threads": torch.get_num_threads(), "results": results}
        atomic_write_text(args.json, json.dumps(payload, indent=1))
    return 0


def _without_options(argv: list[str], names: tuple[str, ...]) -> list[str]:
    """``argv`` less the named options and their values (``--isa X`` and ``--isa=X``)."""
    kept, skip = [], False
    for item in argv:
        if skip:
            skip = False
            continue
        if item in names:
            skip = True
            continue
        if any(item.startswith(name + "=") for name in names):
            continue
        kept.append(item)
    return kept


if __name__ == "__main__":
    raise SystemExit(main())
