"""Refuse NUL characters in request text with a 422 before they reach PostgreSQL.

PostgreSQL text cannot hold U+0000: a name, reason, title, email or Idempotency-Key carrying one
failed at the database with a 500 (found by schemathesis). Every string of every schema would
need the same check, so it is done once, here, on the raw request.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

JSON_NUL = (b"\x00", b"\\u0000")
URLENCODED_NUL = (b"\x00", b"%00")
BODY = json.dumps(
    {
        "error": "validation_error",
        "detail": [
            {"loc": ["request"], "msg": "text may not contain NUL characters", "type": "nul"}
        ],
    }
).encode()


def _has_nul(data: bytes, markers: tuple[bytes, ...]) -> bool:
    return any(marker in data for marker in markers)


class RejectNulMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if _has_nul(scope.get("query_string", b""), URLENCODED_NUL) or any(
            b"\x00" in value for _, value in scope.get("headers", [])
        ):
            await _refuse(send)
            return
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                # The client went away; let the app see the disconnect.
                await self.app(scope, _replay([message]), send)
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        content_type = dict(scope.get("headers", [])).get(b"content-type", b"")
        markers = URLENCODED_NUL if b"urlencoded" in content_type else JSON_NUL
        if _has_nul(body, markers):
            await _refuse(send)
            return
        await self.app(scope, _replay([{"type": "http.request", "body": body}], receive), send)


def _replay(messages: list[Message], then: Receive | None = None) -> Receive:
    pending = list(messages)

    async def receive() -> Message:
        if pending:
            return pending.pop(0)
        if then is not None:
            return await then()
        return {"type": "http.disconnect"}

    return receive


async def _refuse(send: Send) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]
    await send({"type": "http.response.start", "status": 422, "headers": headers})
    await send({"type": "http.response.body", "body": BODY})
