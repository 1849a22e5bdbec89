"""Run by test_large_image.py in a fresh process: segment an H×W image and print the peak
resident memory the prediction added, as JSON. Linux only (/proc/self/clear_refs)."""

import json
import sys
import time

import numpy as np
import torch

import atrous
from atrous.inference import Predictor


def _status(field: str) -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith(field))


def main() -> None:
    height, width, budget = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    torch.manual_seed(0)
    model = atrous.create_model("deeplabv3plus_mobilenetv2", num_classes=2).eval()
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    predictor = Predictor(model, memory_budget=budget)
    predictor.working_memory()  # measured once per predictor, before the baseline
    baseline = _status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # restart the peak (VmHWM) from the current resident size
    start = time.perf_counter()
    result = predictor(image)
    seconds = time.perf_counter() - start
    extra = _status("VmHWM") - baseline
    print(
        json.dumps(
            {
                "mode": result.mode,
                "tile": result.tile,
                "shape": list(result.labels.shape),
                "extra_mib": extra,
                "seconds": seconds,
            }
        )
    )


if __name__ == "__main__":
    main()
