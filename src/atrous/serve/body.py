"""A request's image bytes: the raw body (an image Content-Type) or the multipart field ``image``.

The body is read in memory and counted as it arrives: a ``Content-Length`` over the limit
is refused before anything is read, and a body that grows past the limit (chunked, or a
lying header) is refused as soon as it does. Multipart is parsed here, in memory, rather
than by Starlette's form parser, which spools large files to a temporary file on disk.
"""

from __future__ import annotations

from typing import Any

from .errors import RequestError

FIELD = "image"


async def read_body(request: Any, max_bytes: int) -> bytes:
    """The whole body, at most ``max_bytes`` (413 otherwise)."""
    length = request.headers.get("content-length")
    if length is not None:
        try:
            declared = int(length)
        except ValueError:
            raise RequestError(400, f"Content-Length {length!r} is not a number") from None
        if declared > max_bytes:
            raise RequestError(413, _too_large(declared, max_bytes))
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > max_bytes:
            raise RequestError(413, _too_large(received, max_bytes, at_least=True))
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(size: int, limit: int, *, at_least: bool = False) -> str:
    return f"the body is {'over ' if at_least else ''}{size:,} bytes, over the limit of {limit:,} bytes (--max-bytes)"


async def read_image_bytes(request: Any, max_bytes: int) -> bytes:
    """The image's bytes from a raw image body or a multipart form's ``image`` field.

    Raises:
        RequestError: 415 for a Content-Type that is neither ``image/*`` nor
            ``multipart/form-data``; 413 over ``max_bytes``; 400 for a form without an
            ``image`` field.
    """
    content_type = request.headers.get("content-type", "")
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind.startswith("image/") or kind == "application/octet-stream":
        return await read_body(request, max_bytes)
    if kind == "multipart/form-data":
        body = await read_body(request, max_bytes)
        return multipart_field(body, content_type, FIELD)
    shown = kind or "none"
    raise RequestError(
        415,
        f"unsupported Content-Type {shown}: send the image as the body with an image/* type, "
        f"or as the multipart/form-data field {FIELD!r}",
    )


def multipart_field(body: bytes, content_type: str, name: str) -> bytes:
    """The value of field ``name`` of a ``multipart/form-data`` body, parsed in memory."""
    from python_multipart.multipart import MultipartParser, parse_options_header

    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise RequestError(400, "multipart/form-data without a boundary")
    parts: list[tuple[str | None, bytearray]] = []
    header: dict[str, bytearray] = {"field": bytearray(), "value": bytearray()}
    state: dict[str, Any] = {"name": None}

    def on_part_begin() -> None:
        state["name"] = None
        parts.append((None, bytearray()))

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header["value"] += data[start:end]

    def on_header_end() -> None:
        if bytes(header["field"]).lower() == b"content-disposition":
            _, disposition = parse_options_header(bytes(header["value"]))
            field = disposition.get(b"name")
            state["name"] = field.decode("utf-8", "replace") if field is not None else None
        header["field"], header["value"] = bytearray(), bytearray()

    def on_headers_finished() -> None:
        parts[-1] = (state["name"], parts[-1][1])

    def on_part_data(data: bytes, start: int, end: int) -> None:
        parts[-1][1].extend(data[start:end])

    callbacks = {
        "on_part_begin": on_part_begin,
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_headers_finished": on_headers_finished,
        "on_part_data": on_part_data,
    }
    parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
    try:
        parser.write(body)
        parser.finalize()
    except Exception as exc:  # python-multipart's MultipartParseError and friends
        raise RequestError(400, f"the multipart body could not be parsed ({exc})") from exc
    for field, value in parts:
        if field == name:
            return bytes(value)
    found = ", ".join(repr(f) for f, _ in parts if f) or "none"
    raise RequestError(400, f"the multipart form has no field {name!r} (fields: {found})")
