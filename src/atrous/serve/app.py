"""The routes: ``/v1/model``, ``/v1/segment``, ``/v1/portrait``, ``/healthz``, ``/readyz``, ``/`` and ``/static``.

The contract (docs/serving.md; the web page in ``static/`` relies on it): errors are JSON
``{"detail": "…"}``; every ``/v1`` call needs the API key when one is set; decoding,
inference and encoding run in the bounded :class:`~atrous.serve.pool.WorkerPool`, so the
event loop — and the health endpoints — stay free while the model works.
"""

from __future__ import annotations

import hmac
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image

from ..inference.portrait import DEFAULT_BLUR, resolve_subject_class
from .body import read_image_bytes
from .decode import decode_image
from .encode import label_png, rgb_jpeg, rgb_png
from .errors import RequestError
from .limits import Limits
from .pool import PoolFull, PoolTimeout, WorkerPool
from .service import ModelService

STATIC = Path(__file__).resolve().parent / "static"
FORMATS = ("png", "overlay", "json")
MAX_BLUR = 1000.0
_RETRY_AFTER_S = 1
_IMAGE_BODY = {
    "content": {
        "image/png": {"schema": {"type": "string", "format": "binary"}},
        "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
        "multipart/form-data": {
            "schema": {"type": "object", "properties": {"image": {"type": "string", "format": "binary"}}}
        },
    },
    "required": True,
}
_PLACEHOLDER = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>atrous serve</title></head>
<body><h1>atrous serve</h1><p>The web page is not installed; the API is at <a href="/docs">/docs</a>.</p></body></html>
"""


def create_app(service: ModelService, limits: Limits, *, api_key: str | None = None, start: bool = True) -> FastAPI:
    """The application. ``start``: load the model in the background when the app starts
    (a caller that loads it itself passes False)."""
    pool = WorkerPool(limits.workers, limits.queue)
    if Image.MAX_IMAGE_PIXELS is not None and limits.max_pixels > Image.MAX_IMAGE_PIXELS:
        # Pillow refuses images over twice its own limit when it opens them, before
        # decode_image can apply --max-pixels: a larger --max-pixels raises it, process-wide.
        Image.MAX_IMAGE_PIXELS = limits.max_pixels

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if start:
            service.start()
        yield
        pool.shutdown()

    app = FastAPI(
        title="atrous serve",
        summary="Semantic segmentation and portrait mode over HTTP",
        version=_version(),
        lifespan=lifespan,
    )
    app.state.pool = pool
    app.state.service = service
    app.state.limits = limits

    # -- errors: always {"detail": "one line"} -------------------------------------------

    @app.exception_handler(RequestError)
    async def request_error(_request: Request, exc: RequestError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors())
        return JSONResponse({"detail": problems or "invalid request"}, status_code=422)

    @app.exception_handler(Exception)
    async def internal_error(_request: Request, exc: Exception) -> JSONResponse:
        # Starlette answers what is left in plain text; the traceback still goes to the log.
        reason = " ".join(str(exc).split()) or "no message"
        return JSONResponse({"detail": f"internal error ({type(exc).__name__}: {reason})"}, status_code=500)

    # -- guards ------------------------------------------------------------------------------

    def authorize(request: Request) -> None:
        if api_key is None:
            return
        given = request.headers.get("x-api-key")
        if given is None:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            given = token.strip() if scheme.lower() == "bearer" else None
        if given is None or not hmac.compare_digest(given.encode(), api_key.encode()):
            raise RequestError(
                401,
                "an API key is required: send it as the X-API-Key header or Authorization: Bearer",
                {"WWW-Authenticate": "Bearer"},
            )

    def require_ready() -> None:
        if service.error is not None:
            raise RequestError(503, f"the model failed to load: {service.error}")
        if not service.ready:
            raise RequestError(503, "the model is still loading", {"Retry-After": str(_RETRY_AFTER_S)})

    async def in_pool(fn: Any, *args: Any) -> Any:
        try:
            return await pool.run(fn, *args, timeout=limits.timeout)
        except PoolFull:
            raise RequestError(
                429,
                f"busy: {limits.workers} prediction(s) running and {limits.queue} waiting; retry shortly",
                {"Retry-After": str(_RETRY_AFTER_S)},
            ) from None
        except PoolTimeout:
            raise RequestError(503, f"the request took longer than the timeout of {limits.timeout:g} s") from None

    # -- health ------------------------------------------------------------------------------

    @app.get("/healthz", tags=["health"], summary="200 while the process runs")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], summary="200 once the model is loaded and warmed up, else 503")
    async def readyz() -> JSONResponse:
        if service.error is not None:
            return JSONResponse({"detail": f"the model failed to load: {service.error}"}, status_code=503)
        if not service.ready:
            return JSONResponse({"detail": "the model is loading"}, status_code=503)
        return JSONResponse({"status": "ready"})

    # -- the API -----------------------------------------------------------------------------

    @app.get("/v1/model", tags=["v1"], summary="The model: name, classes, palette, output stride, precision")
    async def model_info(request: Request) -> dict[str, Any]:
        authorize(request)
        require_ready()
        return service.describe()

    @app.post(
        "/v1/segment",
        tags=["v1"],
        summary="Segment an image: the label map (palette PNG), the colour overlay (PNG) or JSON",
        openapi_extra={"requestBody": _IMAGE_BODY},
        responses={200: {"content": {"image/png": {}, "application/json": {}}}},
    )
    async def segment(request: Request, format: str | None = None, alpha: float = 0.5) -> Response:
        authorize(request)
        chosen = choose_format(format, request.headers.get("accept"))
        if not (math.isfinite(alpha) and 0 <= alpha <= 1):
            raise RequestError(400, f"alpha must lie in 0 … 1, got {alpha}")
        require_ready()
        data = await read_image_bytes(request, limits.max_bytes)
        body, media_type = await in_pool(_segment_job, service, limits, data, chosen, alpha)
        return Response(body, media_type=media_type)

    @app.post(
        "/v1/portrait",
        tags=["v1"],
        summary="Portrait mode: the subject sharp, the background blurred (JPEG), as `atrous portrait`",
        openapi_extra={"requestBody": _IMAGE_BODY},
        responses={200: {"content": {"image/jpeg": {}}}},
    )
    async def portrait(request: Request, subject: str | None = None, blur: float = DEFAULT_BLUR) -> Response:
        authorize(request)
        if not (math.isfinite(blur) and 0 <= blur <= MAX_BLUR):
            raise RequestError(400, f"blur must be a radius in px from 0 to {MAX_BLUR:g}, got {blur}")
        require_ready()
        try:
            resolve_subject_class(service.model, subject or None)  # type: ignore[arg-type]
        except ValueError as exc:
            raise RequestError(400, str(exc)) from None
        data = await read_image_bytes(request, limits.max_bytes)
        body = await in_pool(_portrait_job, service, limits, data, subject or None, blur)
        return Response(body, media_type="image/jpeg")

    # -- the page ----------------------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    async def index() -> Response:
        page = STATIC / "index.html"
        if page.is_file():
            return FileResponse(page, media_type="text/html")
        return HTMLResponse(_PLACEHOLDER)

    if STATIC.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def choose_format(format: str | None, accept: str | None) -> str:
    """``format`` when given; else the first of ``image/png`` (png) or ``application/json``
    (json) that ``Accept`` lists; else png."""
    if format is not None:
        if format not in FORMATS:
            raise RequestError(400, f"format must be one of {', '.join(FORMATS)}, got {format!r}")
        return format
    for item in (accept or "").split(","):
        media = item.split(";", 1)[0].strip().lower()
        if media == "image/png":
            return "png"
        if media == "application/json":
            return "json"
    return "png"


# -- the jobs (on a worker thread: decode, infer, encode) ------------------------------------


def _segment_job(service: ModelService, limits: Limits, data: bytes, fmt: str, alpha: float) -> tuple[bytes, str]:
    started = time.perf_counter()
    rgb = decode_image(data, limits.max_pixels)
    decoded = time.perf_counter()
    try:
        result = service.segment(rgb)
    except MemoryError as exc:  # planned: e.g. a strip that base_size would make huge
        raise RequestError(413, str(exc) or "the image needs more memory than the service's budget") from None
    inferred = time.perf_counter()
    if fmt == "png":
        return label_png(result.labels, service.palette), "image/png"
    if fmt == "overlay":
        return rgb_png(service.overlay(rgb, result.labels, alpha)), "image/png"
    import json

    counts = np.bincount(result.labels.ravel().astype(np.int64), minlength=service.num_classes)
    total = max(1, int(result.labels.size))
    summary = {
        "model": service.name,
        "width": int(rgb.shape[1]),
        "height": int(rgb.shape[0]),
        "classes": [
            {"index": i, "name": name, "share": int(counts[i]) / total} for i, name in enumerate(service.class_names)
        ],
        "timing_ms": {
            "decode": round((decoded - started) * 1000, 3),
            "inference": round((inferred - decoded) * 1000, 3),
            "encode": round((time.perf_counter() - inferred) * 1000, 3),
        },
    }
    return json.dumps(summary).encode(), "application/json"


def _portrait_job(service: ModelService, limits: Limits, data: bytes, subject: str | None, blur: float) -> bytes:
    rgb = decode_image(data, limits.max_pixels)
    try:
        return rgb_jpeg(service.portrait(rgb, subject, blur))
    except ValueError as exc:  # the subject was checked before: what is left is the photo's shape
        raise RequestError(400, str(exc)) from None


def _version() -> str:
    from .. import __version__

    return __version__
