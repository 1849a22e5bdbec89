"""Load test of ``atrous serve``: a real server process on loopback, hammered, then stopped.

Starts ``atrous serve`` as a subprocess on a free 127.0.0.1 port (a small model saved to
a temporary folder unless ``--model`` names one), waits for ``/readyz``, sends
``--requests`` POST /v1/segment requests from ``--concurrency`` concurrent connections
(httpx.AsyncClient), then SIGTERMs the server and checks it exits 0. It reports:

* connection errors (must be 0);
* status counts (only 200 and the designed 429 / 503 are allowed);
* the server's RSS after request 500 and after the last one (growth must stay under 10 %);
* p50 / p99 latency and throughput.

It exits 1 when a check fails. The numbers in docs/benchmarks.md come from::

    python bench/serve_load.py            # 2,000 requests at concurrency 16, 128×96 PNGs
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
ALLOWED = {200, 429, 503}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="RUN or torchvision:NAME (default: a 3-class deeplabv3plus_mobilenetv2)")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--size", default="128x96", help="image WIDTHxHEIGHT (default 128x96)")
    parser.add_argument("--format", default="png", choices=("png", "overlay", "json"))
    parser.add_argument("--workers", type=int, default=1, help="the server's --workers (default 1)")
    parser.add_argument(
        "--queue", type=int, default=16, help="the server's --queue (default 16: room for every connection)"
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="the server's --timeout")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    parser.add_argument("--rss-at", type=int, default=500, help="first RSS sample after this many requests")
    parser.add_argument("--json", action="store_true", help="print one JSON line instead of the report")
    return parser.parse_args()


def small_model(folder: Path) -> Path:
    import torch

    import atrous

    torch.manual_seed(0)
    model = atrous.create_model("deeplabv3plus_mobilenetv2", num_classes=3)
    path = folder / "model"
    model.save_pretrained(path, metadata={"class_names": ["background", "person", "cat"]})
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def png(width: int, height: int) -> bytes:
    rgb = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


async def wait_ready(base: str, process: subprocess.Popen, limit: float = 120.0) -> float:
    import httpx

    start = time.monotonic()
    async with httpx.AsyncClient() as client:
        while time.monotonic() - start < limit:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited with {process.returncode} before it was ready")
            try:
                if (await client.get(f"{base}/readyz", timeout=1)).status_code == 200:
                    return time.monotonic() - start
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"the server was not ready within {limit:.0f} s")


async def hammer(args: argparse.Namespace, base: str, pid: int, body: bytes) -> dict:
    import httpx

    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    latencies: list[float] = []
    rss: dict[str, int] = {}
    next_index = 0
    done = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal next_index, done
        while next_index < args.requests:
            next_index += 1
            start = time.perf_counter()
            try:
                response = await client.post(
                    f"{base}/v1/segment?format={args.format}", content=body, headers={"Content-Type": "image/png"}
                )
                statuses[response.status_code] += 1
                if response.status_code == 200:
                    latencies.append(time.perf_counter() - start)
            except httpx.TransportError as exc:
                errors[type(exc).__name__] += 1
            done += 1
            if done == args.rss_at:
                rss["first"] = rss_bytes(pid)

    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=args.timeout + 30) as client:
        start = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(args.concurrency)))
        elapsed = time.perf_counter() - start
    rss["last"] = rss_bytes(pid)
    ordered = sorted(latencies)

    def pct(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000 if ordered else float("nan")

    return {
        "requests": args.requests,
        "concurrency": args.concurrency,
        "connection_errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "rss_at_first_mib": rss.get("first", 0) / 2**20,
        "rss_at_last_mib": rss["last"] / 2**20,
        "rss_growth": rss["last"] / rss["first"] - 1 if rss.get("first") else float("nan"),
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "max_ms": pct(1.0),
        "elapsed_s": elapsed,
        "throughput_rps": args.requests / elapsed,
        "ok_throughput_rps": statuses[200] / elapsed,
    }


def main() -> int:
    args = parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or str(small_model(Path(tmp)))
        port = free_port()
        command = [
            sys.executable, "-m", "atrous.cli", "serve", model, "--port", str(port),
            "--workers", str(args.workers), "--queue", str(args.queue), "--timeout", str(args.timeout),
            "--precision", args.precision,
        ]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
        log = open(Path(tmp) / "server.log", "w+")  # noqa: SIM115 (read back at the end)
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            ready_s = asyncio.run(wait_ready(base, process))
            result = asyncio.run(hammer(args, base, process.pid, png(width, height)))
            process.send_signal(signal.SIGTERM)
            result["exit_code"] = process.wait(60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        result.update(ready_s=ready_s, image=f"{width}x{height}", format=args.format, workers=args.workers,
                      queue=args.queue, precision=args.precision)  # fmt: skip
        log.seek(0)
        server_log = log.read()
        log.close()
    failures = []
    if result["connection_errors"]:
        failures.append(f"{result['connection_errors']} connection errors")
    unexpected = {k: v for k, v in result["statuses"].items() if int(k) not in ALLOWED}
    if unexpected:
        failures.append(f"unexpected statuses {unexpected}")
    if not result["rss_growth"] < 0.10:
        failures.append(f"RSS grew {result['rss_growth']:.1%} from request {args.rss_at} to {args.requests}")
    if result["exit_code"] != 0:
        failures.append(f"the server exited with {result['exit_code']} after SIGTERM")
    result["failures"] = failures
    if args.json:
        print(json.dumps(result))
    else:
        print(f"atrous serve load test: {args.requests} requests, concurrency {args.concurrency}, "
              f"{width}×{height} PNG, format={args.format}, --workers {args.workers} --queue {args.queue}")  # fmt: skip
        print(f"  ready after          {result['ready_s']:.1f} s")
        print(f"  connection errors    {result['connection_errors']}")
        print(f"  statuses             {result['statuses']}")
        print(f"  RSS                  {result['rss_at_first_mib']:.0f} MiB at request {args.rss_at} → "
              f"{result['rss_at_last_mib']:.0f} MiB at {args.requests} ({result['rss_growth']:+.1%})")  # fmt: skip
        print(f"  latency (200s)       p50 {result['p50_ms']:.0f} ms, p90 {result['p90_ms']:.0f} ms, "
              f"p99 {result['p99_ms']:.0f} ms, max {result['max_ms']:.0f} ms")  # fmt: skip
        print(f"  throughput           {result['throughput_rps']:.1f} req/s "
              f"({result['ok_throughput_rps']:.1f} answered 200) over {result['elapsed_s']:.1f} s")  # fmt: skip
        print(f"  server exit code     {result['exit_code']} (SIGTERM)")
        print("  PASS" if not failures else "  FAIL: " + "; ".join(failures))
    if failures:
        print(server_log[-3000:], file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
