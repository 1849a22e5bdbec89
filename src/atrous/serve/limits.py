"""The limits a request must stay within, and their defaults (docs/serving.md)."""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

DEFAULT_MAX_BYTES = 20 * 1024 * 1024
#: The data loader's decompression-bomb rule (atrous.data.io): an image with more pixels than
#: Pillow's ``MAX_IMAGE_PIXELS`` is refused, not decoded. The service refuses by the same rule.
DEFAULT_MAX_PIXELS = int(Image.MAX_IMAGE_PIXELS or 89_478_485)


@dataclass(frozen=True)
class Limits:
    """How much work the service accepts.

    Attributes:
        max_bytes: the largest request body (413 above it).
        max_pixels: the largest image, width × height (413 above it, before decoding).
        workers: predictions that run at once (threads off the event loop).
        queue: requests that may wait for a worker; one more gets 429 with ``Retry-After``.
        timeout: seconds a request may take, waiting included (503 after it).
    """

    max_bytes: int = DEFAULT_MAX_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    workers: int = 1
    queue: int = 8
    timeout: float = 60.0

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_pixels", "workers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(self.queue, bool) or not isinstance(self.queue, int) or self.queue < 0:
            raise ValueError(f"queue must be 0 or more, got {self.queue!r}")
        if not (isinstance(self.timeout, int | float) and self.timeout > 0):
            raise ValueError(f"timeout must be a positive number of seconds, got {self.timeout!r}")
