"""A 4000×3000 image with a small model, inside a 2 GiB working-memory budget on the CPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("peak_memory_script.py")


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="peak RSS reset needs Linux /proc")
def test_4000x3000_fits_a_2gib_budget():
    # A fresh process, so the peak resident size belongs to this prediction alone.
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "3000", "4000", "2GiB"], capture_output=True, text=True, check=True, timeout=600
    )
    record = json.loads(out.stdout.strip().splitlines()[-1])
    assert record["shape"] == [3000, 4000]
    assert record["mode"] == "tiled"  # the whole image would not fit
    assert record["extra_mib"] < 2048, record
