"""Measured speed: FLOPs, latency, throughput, memory and this machine's ceiling.

``atrous bench`` (:mod:`atrous.cli.bench`) and the side-by-side suite in ``bench/`` are
built from these pieces; docs/benchmarks.md records what they measured.
"""

from .ceiling import conv_ceiling
from .flops import count_flops
from .runner import BenchResult, bench_model, build_bench_model, step_function
from .timing import time_interleaved

__all__ = [
    "BenchResult",
    "bench_model",
    "build_bench_model",
    "conv_ceiling",
    "count_flops",
    "step_function",
    "time_interleaved",
]
