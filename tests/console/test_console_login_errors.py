"""The login page says in fixed words why signing in failed, with the server's code; the
error's own text (which may name internal hosts) goes to the log only.

The console application in this process (its real routes and session store) signs in
against a loopback HTTP server standing in for a relay that fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator

import httpx
import pytest
from bellhop_console import ConsoleConfig
from bellhop_console.app import create_app

INTERNAL = "db-7.internal.example:5432"


@contextlib.asynccontextmanager
async def failing_relay(status: int, body: bytes) -> AsyncIterator[str]:
    """A loopback HTTP server answering every request with `status` and `body`."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"(?i)content-length: *(\d+)", head)
            if length:
                await reader.readexactly(int(length.group(1)))
            writer.write(
                b"HTTP/1.1 %d Failed\r\nContent-Type: application/problem+json\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n" % (status, len(body)) + body
            )
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()


def problem(code: str) -> bytes:
    detail = f"connection to {INTERNAL} refused"
    return json.dumps({"code": code, "title": detail, "detail": detail}).encode()


@pytest.mark.parametrize(
    ("status", "body", "words", "logged"),
    [
        (500, problem("internal"), "The relay failed (internal).", INTERNAL),
        (503, problem("store_unavailable"), "The relay cannot serve sign-ins now (store_unavailable).", INTERNAL),
        (502, f"<html>{INTERNAL} is down</html>".encode(), "The relay cannot be reached now (http_502).", "HTTP 502"),
        (500, problem(f"x {INTERNAL}"), "The relay failed (error).", INTERNAL),
    ],
)  # fmt: skip
async def test_a_failed_sign_in_shows_fixed_words_and_logs_the_detail(
    status: int, body: bytes, words: str, logged: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bellhop_console")
    async with failing_relay(status, body) as relay:
        app = create_app(ConsoleConfig(cloud_url=relay, call_timeout_s=5))
        async with app.router.lifespan_context(app):  # the session store's sweeper
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://console") as http:
                form = await http.get("/login")
                token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
                assert token is not None
                data = {"csrf_token": token.group(1), "method": "cloud"}
                answer = await http.post("/login", data={**data, "email": "a@example.com"})
    assert answer.status_code == 503
    shown = re.search(r'role="alert">([^<]*)<', answer.text)
    assert shown is not None
    assert shown.group(1) == words
    assert INTERNAL not in answer.text
    assert logged in caplog.text  # the detail is logged for the operator
