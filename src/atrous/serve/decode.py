"""Image bytes → uint8 (H, W, 3) pixels, in memory, by the data loader's rules.

The size is read from the header and checked against the pixel limit *before* anything
is decoded (a decompression bomb is refused at the cost of its header); then the whole
image is decoded (a truncated file fails here) and turned upright and into RGB as
:func:`atrous.data.io.pil_to_rgb_array` does for files.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..data.io import pil_to_rgb_array
from .errors import RequestError


def decode_image(data: bytes, max_pixels: int) -> np.ndarray:
    """Decode ``data`` as an image.

    Raises:
        RequestError: 400 when it is empty, not an image, or cannot be decoded (truncated or
            corrupt), with the reason; 413 when it has more than ``max_pixels`` pixels.
    """
    if not data:
        raise RequestError(400, "the request holds no image (empty body)")
    try:
        with warnings.catch_warnings():
            # The limit is max_pixels, checked below on the header; Pillow's own warning (at its
            # MAX_IMAGE_PIXELS, which create_app raises to max_pixels when that is larger) is not it.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise RequestError(
                        413,
                        f"the image is {width}×{height} = {width * height:,} pixels, over the limit of "
                        f"{max_pixels:,} pixels (--max-pixels)",
                    )
                image.load()
                return pil_to_rgb_array(image)
    except RequestError:
        raise
    except Image.DecompressionBombError as exc:  # over twice Pillow's limit, so over max_pixels too
        raise RequestError(413, f"the image is over the limit of {max_pixels:,} pixels (--max-pixels): {exc}") from exc
    except UnidentifiedImageError as exc:
        raise RequestError(400, "the body is not an image that Pillow can read") from exc
    except Exception as exc:  # Pillow's decoders raise OSError, SyntaxError, ValueError, struct.error…
        raise RequestError(400, f"the image could not be decoded, it may be truncated or corrupt ({exc})") from exc
