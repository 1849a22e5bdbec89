"""The one error the service's pieces raise: an HTTP status and a one-line reason."""

from __future__ import annotations


class RequestError(Exception):
    """A request the service refuses: ``status`` (400, 413, 415, 429, 503 …) and ``detail``."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}
