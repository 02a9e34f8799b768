"""The API's boundary: what any request must be before a route sees it.

Every text that enters through the path, the query, the headers the relay
reads or a JSON body is refused (`422 invalid_request`) when it holds a
control character (C0, DEL, C1) or a lone surrogate. PostgreSQL cannot
store NUL and no encoder can write a lone surrogate, while SQLite stores
both: refusing them here makes both stores answer alike, and keeps
terminal escapes out of names that others will read.

Bodies are at most `max_body_bytes` (`413 too_large`) and strict JSON
(RFC 8259): UTF-8 only, no byte order mark, no
duplicate keys, no NaN or Infinity, nested at most `MAX_DEPTH` levels.
FastAPI's own parser accepts UTF-16/32, a BOM and duplicate keys, and
answers a body it cannot decode with a bare 400; `BoundaryRoute` parses
first, so every such body is a `422 invalid_request` naming the problem.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.datastructures import QueryParams
from starlette.types import Scope

from bellhop_cloud.api.deps import relay_from
from bellhop_cloud.errors import BodyTooLarge, FieldError, InvalidRequest

# C0 controls, DEL, C1 controls and the surrogate range (only ever lone in a str).
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# The relay's bodies nest two levels; anything deeper is not one of them.
MAX_DEPTH = 16
# The request headers the relay itself reads (forwarded headers: api/proxies.py).
READ_HEADERS = (b"authorization",)


def has_control(text: str) -> bool:
    return CONTROL.search(text) is not None


def refuse(loc: list[str | int], msg: str, detail: str | None = None) -> InvalidRequest:
    error: FieldError = {"loc": loc, "msg": msg}
    return InvalidRequest(detail or "the request does not match the API schema", errors=[error])


def check_path_and_headers(scope: Scope) -> None:
    """Raise InvalidRequest if the path or a header the relay reads holds a control character."""
    if has_control(scope["path"]):
        raise refuse(["path"], "control characters are not allowed")
    for name, value in scope["headers"]:
        if name in READ_HEADERS and has_control(value.decode("latin-1")):
            raise refuse(["header", name.decode()], "control characters are not allowed")


def check_query(scope: Scope) -> None:
    """Raise InvalidRequest if a query parameter's name or value holds a control character."""
    for name, value in QueryParams(scope["query_string"]).multi_items():
        if has_control(name) or has_control(value):
            where = name if not has_control(name) else "?"
            raise refuse(["query", where], "control characters are not allowed")


def parse_json_body(body: bytes) -> Any:
    """The JSON value of `body`, or InvalidRequest saying why it is not strict JSON."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise refuse(["body"], "the body must be UTF-8", "the body is not UTF-8") from None
    if text.startswith("\ufeff"):
        raise refuse(["body"], "send UTF-8 without a byte order mark", "the body starts with a BOM")
    try:
        value = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except _Malformed as exc:
        raise refuse(["body"], str(exc), "the body is not strict JSON") from None
    except json.JSONDecodeError as exc:  # its message names the problem, never the input
        raise refuse(["body"], f"not JSON: {exc.msg}", "the body is not JSON") from None
    except (RecursionError, ValueError):  # nesting past the parser's stack; huge numbers
        raise refuse(["body"], "not JSON this API can read", "the body is not JSON") from None
    _check_value(value, ["body"], 0)
    return value


class _Malformed(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        raise _Malformed("duplicate keys in an object")
    return found


def _no_constant(name: str) -> Any:
    raise _Malformed("NaN and Infinity are not JSON")


def _check_value(value: Any, loc: list[str | int], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise refuse(loc, f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        if has_control(value):
            raise refuse(loc, "control characters are not allowed")
    elif isinstance(value, dict):
        for key, item in value.items():
            if has_control(key):
                raise refuse(loc, "control characters are not allowed in keys")
            _check_value(item, [*loc, key], depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_value(item, [*loc, index], depth + 1)


class CheckedRequest(Request):
    """A request whose JSON body was parsed strictly before the route read it."""

    _checked_json: Any

    async def parse_body(self, max_bytes: int) -> None:
        """Read at most `max_bytes` (BodyTooLarge past that) and parse them strictly."""
        declared = self.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise BodyTooLarge(f"the body is over {max_bytes} bytes")
        chunks: list[bytes] = []
        size = 0
        async for chunk in self.stream():
            size += len(chunk)
            if size > max_bytes:
                raise BodyTooLarge(f"the body is over {max_bytes} bytes")
            chunks.append(chunk)
        self._body = body = b"".join(chunks)
        if body:
            self._checked_json = parse_json_body(body)

    async def json(self) -> Any:
        # FastAPI calls this only for a non-empty JSON body, which parse_body has read.
        return self._checked_json


Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class BoundaryRoute(APIRoute):
    """Every route of the relay: the request is checked before FastAPI solves it."""

    def get_route_handler(self) -> Handler:
        declared = super().get_route_handler()
        takes_body = self.body_field is not None

        async def handler(request: Request) -> Response:
            check_path_and_headers(request.scope)
            check_query(request.scope)
            if takes_body:
                checked = CheckedRequest(request.scope, request.receive)
                await checked.parse_body(relay_from(request).config.max_body_bytes)
                request = checked
            return await declared(request)

        return handler
