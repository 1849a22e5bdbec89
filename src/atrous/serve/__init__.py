"""``atrous serve``: an HTTP service (FastAPI on uvicorn) around :class:`atrous.inference.Predictor`.

One idea per module: ``limits`` (the request limits and their defaults), ``decode`` (bytes
→ pixels, in memory, under the pixel limit), ``encode`` (results → PNG / JPEG bytes),
``pool`` (the bounded worker pool with its bounded queue), ``service`` (the model: loaded,
warmed, ready), ``body`` (reading a request's image under the byte limit, raw or
multipart), ``app`` (the routes). FastAPI is an optional extra (``atrous[serve]``):
importing ``atrous`` or this package does not import it; :func:`create_app` does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .limits import Limits

if TYPE_CHECKING:
    from .service import ModelService

__all__ = ["Limits", "create_app"]


def create_app(service: ModelService, limits: Limits, *, api_key: str | None = None, start: bool = True) -> Any:
    """The FastAPI application serving ``service`` under ``limits`` (see :mod:`atrous.serve.app`)."""
    from .app import create_app as _create_app

    return _create_app(service, limits, api_key=api_key, start=start)
