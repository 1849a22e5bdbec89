"""``atrous serve``: segmentation and portrait mode over HTTP (FastAPI on uvicorn; docs/serving.md)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import TYPE_CHECKING

from .common import add_scale_flip_options, resolve_flip, resolve_scales

if TYPE_CHECKING:
    from ..serve.service import ModelService

HELP = "serve a model over HTTP: segmentation, portrait mode and a web page (needs atrous[serve])"

API_KEY_ENV = "ATROUS_API_KEY"
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _checked(parse, accept, expected: str):
    """An argparse ``type``: ``parse`` the text, keep it when ``accept(value)``, else one
    line saying what was expected."""

    def convert(text: str):
        try:
            value = parse(text)
        except ValueError:
            value = None
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return convert


_positive_int = _checked(int, lambda v: v >= 1, "a positive integer")
_count = _checked(int, lambda v: v >= 0, "0 or more")
_seconds = _checked(float, lambda v: 0 < v < float("inf"), "a positive number of seconds")


_port = _checked(int, lambda v: 0 <= v <= 65535, "a port number in 0 … 65535")


def add_parser(parser: argparse.ArgumentParser) -> None:
    from ..serve.limits import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS

    parser.add_argument(
        "model", metavar="RUN", help="a run folder, a saved model folder, a checkpoint, or torchvision:NAME"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, this machine only)")
    parser.add_argument("--port", type=_port, default=8000, help="port (default 8000; 0: any free port)")
    parser.add_argument(
        "--max-bytes", type=_positive_int, default=DEFAULT_MAX_BYTES, metavar="N", help="largest request body (413)"
    )
    parser.add_argument(
        "--max-pixels",
        type=_positive_int,
        default=DEFAULT_MAX_PIXELS,
        metavar="N",
        help="largest image, width × height (413; default Pillow's decompression-bomb limit, as the data loader)",
    )
    parser.add_argument("--workers", type=_positive_int, default=1, metavar="N", help="predictions run at once (1)")
    parser.add_argument(
        "--queue", type=_count, default=8, metavar="N", help="requests that may wait for a worker; more get 429 (8)"
    )
    parser.add_argument(
        "--timeout", type=_seconds, default=60.0, metavar="S", help="seconds a request may take, waiting included (503)"
    )
    parser.add_argument(
        "--api-key", help=f"require this key (X-API-Key or Authorization: Bearer) on /v1; default ${API_KEY_ENV}"
    )
    parser.add_argument(
        "--precision",
        default="auto",
        choices=("auto", "fp32", "bf16"),
        help="auto (default): fp32 or bf16, whichever measures faster here with the same labels",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    add_scale_flip_options(parser)  # as atrous portrait: --scales, --ms, --flip (segment and portrait)


def run(args: argparse.Namespace) -> int:
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError as exc:
        raise ValueError(f"atrous serve needs the serve extra: pip install 'atrous[serve]' ({exc})") from None

    from ..inference.loading import load_inference_model
    from ..inference.torchvision_models import is_torchvision_spec
    from ..runtime import resolve_device
    from ..serve import Limits, create_app
    from ..serve.service import ModelService

    if not is_torchvision_spec(args.model) and not os.path.exists(args.model):
        raise FileNotFoundError(f"model {args.model} does not exist")
    scales = resolve_scales(args, [1.0])  # before the port is taken: bad flags cost nothing
    api_key = args.api_key if args.api_key is not None else os.environ.get(API_KEY_ENV) or None
    if api_key is not None and not api_key.strip():
        raise ValueError("--api-key is empty")
    limits = Limits(
        max_bytes=args.max_bytes,
        max_pixels=args.max_pixels,
        workers=args.workers,
        queue=args.queue,
        timeout=args.timeout,
    )
    device = resolve_device(args.device)
    service = ModelService(
        lambda: load_inference_model(args.model, args.precision),
        name=str(args.model),
        device=device,
        precision=args.precision,
        scales=scales,
        flip=resolve_flip(args, False),
    )
    if args.host not in _LOOPBACK:
        print(
            f"atrous serve: warning: listening on {args.host}, reachable from other machines"
            + ("" if api_key else "; anyone who can reach it can use it (set --api-key)"),
            file=sys.stderr,
        )
    app = create_app(service, limits, api_key=api_key)
    print(
        f"atrous serve: {args.model} on http://{args.host}:{args.port}/ (ready at /readyz once loaded)",
        file=sys.stderr,
        flush=True,
    )
    # uvicorn handles SIGTERM/SIGINT: stop accepting, finish the requests in flight, exit.
    server = _signal_recording_server(uvicorn.Config(app, host=args.host, port=args.port, log_level="info"))

    def stop(exc: BaseException) -> None:
        print(f"atrous serve: the model failed to load; stopping ({exc})", file=sys.stderr, flush=True)
        server.should_exit = True

    service.on_failure = stop
    # uvicorn re-raises the signal that stopped it once it has shut down, to die by it; a
    # SIGTERM that shut the service down cleanly is a normal end here (exit 0), so the
    # re-raised SIGTERM lands in this no-op handler. Ctrl-C still ends as an interrupt (130).
    previous = signal.signal(signal.SIGTERM, lambda _signum, _frame: None)
    try:
        server.run()
    except SystemExit:
        if server.started:
            raise
        # uvicorn's sys.exit(1) when it cannot bind the port: said below, exit 2 like bad input.
    except KeyboardInterrupt:
        _leave_now_if_loading(service, 130, "atrous serve: interrupted")
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    if service.error is not None:
        raise service.error
    if not server.started:
        message = f"could not listen on {args.host}:{args.port} (see the message above)"
        _leave_now_if_loading(service, 2, f"atrous serve: error: {message}")
        raise OSError(message)
    if server.stopped_by == signal.SIGINT:
        # Ctrl-C whose re-raised signal asyncio's runner absorbed: still an interrupt (130).
        _leave_now_if_loading(service, 130, "atrous serve: interrupted")
        raise KeyboardInterrupt
    _leave_now_if_loading(service, 0)
    return 0


def _signal_recording_server(config):
    """A uvicorn server for ``config`` that records, in ``stopped_by``, the first signal that stopped it."""
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, remembering the first signal that stopped it.

        uvicorn re-raises that signal after its shutdown, but inside ``asyncio.run``, whose
        own SIGINT handler may turn it into a cancellation that ends quietly: whether
        Ctrl-C surfaced as KeyboardInterrupt depended on timing. The record does not."""

        stopped_by: int | None = None

        def handle_exit(self, sig, frame) -> None:
            if self.stopped_by is None:
                self.stopped_by = sig
            super().handle_exit(sig, frame)

    return Server(config)


def _leave_now_if_loading(service: ModelService, code: int, message: str | None = None) -> None:
    """Stopped while the model still loads: say ``message`` (what ``atrous.cli.main`` would
    have said) and end the process at once with ``code``.

    The loading thread is inside torch; tearing the interpreter down under it runs
    libtorch's static destructors while that thread still uses them, and the process
    aborts ("terminate called without an active exception", SIGABRT). There is nothing
    left to write: the server has shut down and no request was served.
    """
    if service.loading:
        if message:
            print(message, file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
