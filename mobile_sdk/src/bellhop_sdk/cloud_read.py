"""Reading the relay's answers within bounds: a whole body, or an event stream.

A relay (or anything in front of it) could send a body without end, or a stream whose
line never ends; reading either whole would grow the caller's memory without bound.
Both are read as they arrive and given up past a bound: the connection is closed and
the call raises `ServerError` with code `answer_too_large`. The bounds count bytes as
decoded (after any Content-Encoding), so a small compressed answer cannot expand past them.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Final

import httpx
from httpx_sse import ServerSentEvent, SSEError

from bellhop_sdk.errors import ServerError
from bellhop_sdk.models import Path

__all__ = [
    "MAX_ANSWER_BYTES",
    "MAX_EVENT_BYTES",
    "read_bounded",
    "sse_bounded",
    "too_large",
]

MAX_ANSWER_BYTES: Final = 8 * 1024 * 1024  # a page of 500 devices is well under 1 MiB
MAX_EVENT_BYTES: Final = 1024 * 1024  # one event (its lines together) of a live stream
# What described the body as it came over the wire, not the bytes read from it.
_WIRE_HEADERS: Final = frozenset({"content-encoding", "content-length", "transfer-encoding"})
_EOL: Final = re.compile(rb"\r\n|\r|\n")


def too_large(what: str, limit: int) -> ServerError:
    return ServerError(
        f"the relay's {what} is larger than {limit} bytes: not read further",
        code="answer_too_large",
        path=Path.CLOUD,
    )


async def read_bounded(response: httpx.Response, limit: int) -> httpx.Response:
    """`response` (sent with `stream=True`) read whole, as a response holding its body;
    `response` is closed either way. More than `limit` bytes: `too_large`."""
    try:
        declared = response.headers.get("content-length", "")
        encoded = "content-encoding" in response.headers
        if declared.isdigit() and int(declared) > limit and not encoded:
            raise too_large("answer", limit)
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > limit:
                raise too_large("answer", limit)
    finally:
        await response.aclose()
    headers = [(k, v) for k, v in response.headers.multi_items() if k not in _WIRE_HEADERS]
    return httpx.Response(
        response.status_code, headers=headers, content=bytes(body), request=response.request
    )


class _Decoder:
    """Server-sent event lines (WHATWG HTML, "event stream interpretation") to events."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.event = ""
        self.data: list[str] = []
        self.size = 0
        self.last_id = ""
        self.retry: int | None = None

    def line(self, raw: bytes) -> ServerSentEvent | None:
        if not raw:
            if not (self.event or self.data or self.retry is not None):
                return None
            sse = ServerSentEvent(self.event, "\n".join(self.data), self.last_id, self.retry)
            self.event, self.data, self.size, self.retry = "", [], 0, None
            return sse
        text = raw.decode("utf-8", "replace")
        if text.startswith(":"):
            return None  # a comment (the relay's heartbeat)
        name, _, value = text.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self.size += len(raw) + 1
            if self.size > self.limit:
                raise too_large("event", self.limit)
            self.data.append(value)
        elif name == "event":
            self.event = value
        elif name == "id" and "\0" not in value:
            self.last_id = value
        elif name == "retry" and value.isdigit():
            self.retry = int(value)
        return None


async def sse_bounded(response: httpx.Response, limit: int) -> AsyncIterator[ServerSentEvent]:
    """The events of an open `text/event-stream` response, each line and each event at
    most `limit` bytes (`too_large` past it); the caller closes `response`."""
    content_type = response.headers.get("content-type", "").partition(";")[0]
    if "text/event-stream" not in content_type:
        raise SSEError(f"expected an event stream, got {content_type!r}")
    decoder = _Decoder(limit)
    buffer = bytearray()
    async for chunk in response.aiter_bytes():
        buffer += chunk
        start = 0
        while (end := _EOL.search(buffer, start)) is not None:
            if end.group() == b"\r" and end.end() == len(buffer):
                break  # perhaps the first half of "\r\n": wait for the next chunk
            sse = decoder.line(bytes(buffer[start : end.start()]))
            start = end.end()
            if sse is not None:
                yield sse
        del buffer[:start]
        if len(buffer) > limit:
            raise too_large("event stream's line", limit)
