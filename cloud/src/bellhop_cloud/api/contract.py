"""The OpenAPI document says every answer the relay can give, errors included.

Routes declare the errors of their own domain (`problems.responses(...)`:
403, 404, 409, 429...). What any route can answer is added here, once, when
the document is built:

- 422 `invalid_request` (the boundary checks every path, query and header),
  500 `internal_error`; 413 `too_large` for operations with a body;
- 401 for operations that need a token, with `WWW-Authenticate`;
- 503 `unavailable` for operations that use the store (all but a few);
- every 4xx/5xx as `application/problem+json` with the `Problem` schema;
  `Retry-After` on 429 and `X-Request-Id` on 500 declared as headers;
- every string a request carries (parameters, bodies) without control
  characters, as the boundary enforces.

`allowed_methods` answers the `Allow` header of a 405 from the document.

tests/cloud/test_cloud_contract.py runs schemathesis against a real server
with this document: no answer may be undocumented.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI

MEDIA_TYPE = "application/problem+json"
REQUEST_ID_HEADER = "X-Request-Id"
DESCRIPTIONS = {
    401: "Missing, invalid or expired credentials, or an ended session",
    403: "Signed in, but the role does not allow this",
    404: "Not found (or not visible to the caller)",
    409: "Conflict with the current state",
    413: "The body is larger than the relay accepts",
    422: "The body, parameters or headers are not what the API accepts",
    429: "Too many attempts; see Retry-After",
    500: "The relay failed; the answer names the reference it is logged under",
    503: "A dependency (the database, the rate limiter) is unavailable",
    504: "The gateway did not answer within the time the caller chose to wait",
}
# What api/boundary.py refuses in any text, as JSON Schema says it.
NO_CONTROL = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
# Operations that answer without the store.
STORELESS = {("get", "/healthz"), ("head", "/healthz"), ("get", "/metrics")}
STORELESS |= {("get", "/.well-known/jwks.json")}
_HEADERS = {
    "401": {"WWW-Authenticate": 'Bearer error="<code>"'},
    "429": {"Retry-After": "seconds to wait"},
    "500": {REQUEST_ID_HEADER: "the reference under which the error is logged"},
}
_FASTAPI_VALIDATION = ("HTTPValidationError", "ValidationError")


def install(app: FastAPI) -> None:
    """Have `app.openapi()` return the completed document (built once, then cached)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def complete(document: dict[str, Any]) -> dict[str, Any]:
    schemas = document.get("components", {}).get("schemas", {})
    requested: set[str] = set()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            _complete_operation(method, path, operation)
            for parameter in operation.get("parameters", []):
                _no_control(parameter.get("schema", {}), schemas, requested)
            for media in operation.get("requestBody", {}).get("content", {}).values():
                _no_control(media.get("schema", {}), schemas, requested)
    for name in _FASTAPI_VALIDATION:  # replaced by Problem everywhere
        schemas.pop(name, None)
    return document


def _no_control(node: Any, schemas: dict[str, Any], seen: set[str]) -> None:
    """Give every string schema under `node` (following $refs once) the NO_CONTROL pattern."""
    if isinstance(node, list):
        for item in node:
            _no_control(item, schemas, seen)
        return
    if not isinstance(node, dict):
        return
    ref = node.get("$ref")
    if isinstance(ref, str):
        name = ref.rsplit("/", 1)[-1]
        if name not in seen and name in schemas:
            seen.add(name)
            _no_control(schemas[name], schemas, seen)
        return
    if node.get("type") == "string" and "pattern" not in node and "enum" not in node:
        node["pattern"] = NO_CONTROL
    for value in node.values():
        _no_control(value, schemas, seen)


def allowed_methods(app: FastAPI, path: str) -> list[str]:
    """The methods the document lists for `path` (a concrete path, not a template)."""
    return sorted(
        {m for regex, methods in _templates(app) if regex.fullmatch(path) for m in methods}
    )


def _templates(app: FastAPI) -> list[tuple[re.Pattern[str], frozenset[str]]]:
    found: list[tuple[re.Pattern[str], frozenset[str]]] | None = getattr(
        app.state, "path_templates", None
    )
    if found is None:
        found = app.state.path_templates = _compile(app.openapi())
    return found


def _compile(document: dict[str, Any]) -> list[tuple[re.Pattern[str], frozenset[str]]]:
    return [
        (
            re.compile(re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(path))),
            frozenset(method.upper() for method in operations),
        )
        for path, operations in document["paths"].items()
    ]


def _complete_operation(method: str, path: str, operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    statuses = {"422", "500"}
    if "requestBody" in operation:
        statuses.add("413")
    if operation.get("security"):
        statuses.add("401")
    if (method, path) not in STORELESS:
        statuses.add("503")
    for status in statuses:
        responses.setdefault(status, {})
    operation["responses"] = responses = dict(sorted(responses.items()))
    for status, response in responses.items():
        if not status.startswith(("4", "5")):
            continue
        response["description"] = DESCRIPTIONS.get(int(status), response.get("description", ""))
        response["content"] = {MEDIA_TYPE: {"schema": PROBLEM_REF}}
        headers = _HEADERS.get(status)
        if headers:
            response["headers"] = {
                name: {"description": text, "required": True, "schema": {"type": "string"}}
                for name, text in headers.items()
            }
