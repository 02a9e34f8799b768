"""What every answer of the relay carries, whatever route made it.

- `Cache-Control: no-store` unless the route set its own (only the JWKS
  does): answers carry tokens, enrolment tokens and tenants' data, which no
  browser, proxy or SDK cache should keep. A default, so a new route that
  returns a secret cannot forget it.
- No body after `HEAD`: the health routes answer HEAD as GET (same status
  and headers), and so does every error answer to a HEAD.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

NO_STORE = (b"cache-control", b"no-store")


class AnswerHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        head = scope["method"] == "HEAD"

        async def answer(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(name.lower() == b"cache-control" for name, _ in headers):
                    headers.append(NO_STORE)
                message = {**message, "headers": headers}
            elif head and message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app(scope, receive, answer)
