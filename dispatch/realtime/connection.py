"""A WebSocket session: token check, bounded send queue, per-connection seq, heartbeat, limits.

A connection is a receive loop plus a send task (as in encode/broadcaster's example). Durable
events carry `event_id`; a client that reconnects with `?after=<event_id>` gets what it missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from dispatch.accounts.dependencies import websocket_token
from dispatch.accounts.service import token_account_current
from dispatch.core.database import SessionSource, transaction
from dispatch.core.errors import is_retryable
from dispatch.core.redis import RegionKeys
from dispatch.core.security import TokenClaims, decode_access_token
from dispatch.core.settings import Settings
from dispatch.events.hub import RESYNC
from dispatch.events.outbox import event_message
from dispatch.events.repository import EventRepository

if TYPE_CHECKING:
    from dispatch.state import AppState  # which holds this module's ConnectionLimiter

log = logging.getLogger(__name__)

CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_TRY_AGAIN = 1013
CLOSE_TOKEN = 4401
CLOSE_HEARTBEAT = 4408
CLOSE_REPLACED = 4409
ACCOUNT_GONE = "this token's account no longer exists"
TOKEN_EXPIRED = "token expired; reconnect with a new token, or send refresh before it expires"
REPLAY_LIMIT = 1000
FLUSH_ROUNDS_BEFORE_CLOSE = 10  # a writer blocked on a peer that does not read gets no longer

Handler = Callable[["Connection", dict[str, Any]], Awaitable[None]]


MAX_JSON_DEPTH = 32  # our messages are flat; deeper values reach code that recurses (the encoder)


class NestedTooDeep(ValueError):
    def __init__(self) -> None:
        super().__init__(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")


def loads(raw: str) -> Any:
    """Parse a client frame: orjson, else the standard library, which also takes `NaN`,
    `Infinity` and integers past 64 bits, so what is accepted and refused stays the same.

    Raises ValueError for anything that is not JSON, and NestedTooDeep past MAX_JSON_DEPTH: the
    parsers allow 1,024 levels, enough to kill the writer echoing an `id` back (orjson encodes
    254, the standard library's encoder recurses).
    """
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        try:
            value = json.loads(raw)
        except RecursionError as exc:
            raise NestedTooDeep from exc
    # Counting brackets is cheap and spares the walk for every ordinary frame.
    if raw.count("[") + raw.count("{") > MAX_JSON_DEPTH and _nested_deeper_than(value):
        raise NestedTooDeep
    return value


def _nested_deeper_than(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            children = list(item.values())
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        pending.extend((child, depth + 1) for child in children)
    return False


def dumps(message: dict[str, Any]) -> str:
    try:
        return orjson.dumps(message).decode()
    except TypeError:  # an integer past 64 bits, a non-string key
        return json.dumps(message)


class ConnectionLimiter:
    """Caps one user's sockets on this process. Past the cap the newest socket wins: an app that
    reconnects after its network changed must not wait for its dead socket's heartbeat to lapse."""

    def __init__(self) -> None:
        self.open: dict[uuid.UUID, list[Connection]] = defaultdict(list)

    def total(self) -> int:
        return sum(len(sockets) for sockets in self.open.values())

    def admit(self, connection: Connection, cap: int) -> list[Connection]:
        """Count `connection` in; returns the oldest sockets it pushes past the cap."""
        sockets = self.open[connection.user_id]
        sockets.append(connection)
        excess = max(0, len(sockets) - max(1, cap))
        replaced, sockets[:] = sockets[:excess], sockets[excess:]
        return replaced

    def release(self, connection: Connection) -> None:
        sockets = self.open.get(connection.user_id)
        if sockets is None:
            return
        if connection in sockets:
            sockets.remove(connection)
        if not sockets:
            del self.open[connection.user_id]


class Connection:
    def __init__(self, websocket: WebSocket, claims: TokenClaims, settings: Settings) -> None:
        self.websocket = websocket
        self.claims = claims
        self.member = str(claims.user_id)  # the driver's member name in the geo index
        self.settings = settings
        self.outbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(
            maxsize=settings.ws_send_queue
        )
        self.seq = 0
        self.last_event_id = 0
        self.last_heard = time.monotonic()
        self.state: dict[str, Any] = {}
        self._tokens = float(settings.ws_messages_per_second * 2)
        self._refilled = time.monotonic()

    @property
    def user_id(self) -> uuid.UUID:
        return self.claims.user_id

    @property
    def app_state(self) -> AppState:
        state: AppState = self.websocket.app.state
        return state

    def send(self, message: dict[str, Any]) -> None:
        event_id = message.get("event_id")
        if isinstance(event_id, int):
            if event_id <= self.last_event_id:
                return
            self.last_event_id = event_id
        self.seq += 1
        framed = {**message, "seq": self.seq}
        if self.outbox.full():
            # The client reads too slowly: the oldest frames make room for the notice and this one
            # (dropping one only made room for the notice, and this put raised QueueFull).
            with contextlib.suppress(asyncio.QueueEmpty):
                self.outbox.get_nowait()
                self.outbox.get_nowait()
            self.outbox.put_nowait({"type": "resync", "reason": "send queue overflowed"})
        self.outbox.put_nowait(framed)

    def error(self, error: str, detail: str, request: dict[str, Any] | None = None) -> None:
        message: dict[str, Any] = {"type": "error", "error": error, "detail": detail}
        if request is not None and isinstance(request.get("type"), str):
            message["for"] = request["type"]
            for key in ("offer_id", "ride_id", "id"):
                if key in request:
                    message[key] = request[key]
        self.send(message)

    def token_expired(self) -> bool:
        return time.time() >= self.claims.expires_at.timestamp()

    def allow_message(self, now: float) -> bool:
        rate = self.settings.ws_messages_per_second
        self._tokens = min(rate * 2, self._tokens + (now - self._refilled) * rate)
        self._refilled = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


async def authenticate(websocket: WebSocket, settings: Settings, role: str) -> TokenClaims | None:
    token = websocket_token(dict(websocket.headers), dict(websocket.query_params))
    claims = decode_access_token(settings, token) if token else None
    code, reason = CLOSE_POLICY, None
    if claims is None:
        reason = "missing, invalid or expired token"
    elif claims.role != role:
        reason = f"this socket is for {role}s"
    else:
        try:
            if not await _account_current(websocket.app.state, claims):
                reason = ACCOUNT_GONE
        except Exception as exc:
            if not is_retryable(exc):
                raise
            code, reason = CLOSE_TRY_AGAIN, "a backing service failed; reconnect"
    if reason is not None:
        await websocket.accept()
        await websocket.close(code=code, reason=reason)
        return None
    return claims


async def _account_current(app_state: SessionSource, claims: TokenClaims) -> bool:
    async with transaction(app_state) as session:
        return await token_account_current(session, claims)


async def _refresh(connection: Connection, message: dict[str, Any]) -> None:
    """`{"type": "refresh", "token"}`: a newer token of the same account and role moves the
    socket's deadline to its expiry; anything else leaves the deadline where it was."""
    token = message.get("token")
    claims = None
    if isinstance(token, str):
        claims = decode_access_token(connection.settings, token)
    if claims is None:
        connection.error("invalid_token", "missing, invalid or expired token", message)
        return
    if claims.user_id != connection.user_id or claims.role != connection.claims.role:
        connection.error("invalid_token", "the token is for another account or role", message)
        return
    if not await _account_current(connection.app_state, claims):
        await _close(connection, CLOSE_TOKEN, ACCOUNT_GONE)
        return
    if claims.expires_at > connection.claims.expires_at:
        connection.claims = claims
    reply: dict[str, Any] = {
        "type": "refreshed",
        "expires_at": connection.claims.expires_at.isoformat(),
    }
    if "id" in message:
        reply["id"] = message["id"]
    connection.send(reply)


def origin_allowed(websocket: WebSocket, settings: Settings) -> bool:
    """Native apps send no Origin; a browser page must come from a configured origin."""
    origin = websocket.headers.get("origin")
    if origin is None:
        return True
    allowed = settings.ws_allowed_origins
    return allowed == "*" or origin in allowed.split(",")


async def serve(
    websocket: WebSocket,
    role: str,
    on_message: Handler,
    on_open: Callable[[Connection], Awaitable[None]] | None = None,
    on_event: Callable[[Connection, dict[str, Any]], None] | None = None,
) -> None:
    app_state: AppState = websocket.app.state
    settings = app_state.settings
    if not origin_allowed(websocket, settings):
        await websocket.accept()
        await websocket.close(code=CLOSE_POLICY, reason="origin not allowed")
        return
    claims = await authenticate(websocket, settings, role)
    if claims is None:
        return
    limiter = app_state.ws_limiter
    connection = Connection(websocket, claims, settings)
    channel = RegionKeys(settings.region).user_channel(claims.user_id)
    try:
        await websocket.accept()
        for replaced in limiter.admit(connection, settings.ws_max_connections_per_user):
            _replace(replaced)
        async with app_state.event_hub.listen(channel, settings.ws_send_queue) as live:
            after = _after_param(websocket)
            connection.send(
                {
                    "type": "hello",
                    "user_id": str(claims.user_id),
                    "role": role,
                    "expires_at": claims.expires_at.isoformat(),
                }
            )
            if after is not None:
                connection.last_event_id = after
                await _replay(app_state, connection, after)
            if on_open is not None:
                await on_open(connection)
            tasks = [
                asyncio.create_task(_pump_live(connection, live, on_event)),
                asyncio.create_task(_write(connection)),
                asyncio.create_task(_heartbeat(connection)),
                asyncio.create_task(_expire(connection)),
            ]
            try:
                await _read(connection, on_message)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
    except WebSocketDisconnect:
        pass
    finally:
        limiter.release(connection)


_replacing: set[asyncio.Task[None]] = set()


def _replace(connection: Connection) -> None:
    """Close a socket that a newer one of the same user replaces, in the background: a dead peer
    may hold the close back until its transport times out, and the newcomer must not wait for it.
    The close also ends the socket's read loop (the server queues the disconnect at once), after
    the message it may be handling."""
    task = asyncio.create_task(
        _close(connection, CLOSE_REPLACED, "replaced by a newer connection of this user")
    )
    _replacing.add(task)
    task.add_done_callback(_replacing.discard)


def _after_param(websocket: WebSocket) -> int | None:
    raw = websocket.query_params.get("after")
    if raw is None or not raw.isdigit():
        return None
    return int(raw)


async def _replay(
    app_state: SessionSource, connection: Connection, after: int, since: datetime | None = None
) -> None:
    async with transaction(app_state) as session:
        missed = await EventRepository(session).missed(
            connection.user_id, after, REPLAY_LIMIT, since
        )
    for event in missed:
        connection.send(event_message(event))


async def _pump_live(
    connection: Connection,
    live: asyncio.Queue[dict[str, Any]],
    on_event: Callable[[Connection, dict[str, Any]], None] | None,
) -> None:
    while True:
        message = await live.get()
        if message.get("type") == RESYNC:
            # Redis was away and live messages were lost: send what the log has that we did not.
            since = datetime.fromisoformat(str(message["since"]))
            with contextlib.suppress(Exception):
                await _replay(connection.app_state, connection, connection.last_event_id, since)
            continue
        if on_event is not None:
            on_event(connection, message)
        connection.send(message)


async def _write(connection: Connection) -> None:
    outbox = connection.outbox
    send_text = connection.websocket.send_text
    while True:
        message = await outbox.get()  # no suspension while frames are queued
        if message is None:
            return
        try:
            text = dumps(message)
        except (TypeError, ValueError, RecursionError):
            # A frame we cannot encode is dropped, not the writer: a dead writer leaves a socket
            # that answers nothing until its heartbeat lapses.
            log.error("websocket frame %r could not be encoded", message.get("type"))
            continue
        await send_text(text)


async def _heartbeat(connection: Connection) -> None:
    interval = connection.settings.ws_heartbeat_s
    while True:
        await asyncio.sleep(interval)
        if time.monotonic() - connection.last_heard > interval * 3:
            await _close(connection, CLOSE_HEARTBEAT, "missed heartbeats")
            return
        connection.send({"type": "ping"})


async def _expire(connection: Connection) -> None:
    """Close at the token's expiry, as REST would refuse it then; a refresh moves the deadline."""
    while True:
        remaining = connection.claims.expires_at.timestamp() - time.time()
        if remaining <= 0:
            await _close(connection, CLOSE_TOKEN, TOKEN_EXPIRED)
            return
        await asyncio.sleep(remaining)


async def _close(connection: Connection, code: int, reason: str) -> None:
    """Close after what is already queued, so that the client reads why (the `rate_limited`
    errors before a flood's close, say): a read loop fed faster than it yields would otherwise
    close before the writer ever ran."""
    for _ in range(FLUSH_ROUNDS_BEFORE_CLOSE):
        if connection.outbox.empty():
            break
        await asyncio.sleep(0)  # the writer drains the outbox whenever it runs, unless blocked
    if connection.websocket.application_state is WebSocketState.CONNECTED:
        with contextlib.suppress(Exception):
            await connection.websocket.close(code=code, reason=reason)


async def _read(connection: Connection, on_message: Handler) -> None:
    websocket = connection.websocket
    limit = connection.settings.ws_max_frame_bytes
    flood_strikes = 0
    while True:
        frame = await websocket.receive()
        if frame["type"] == "websocket.disconnect":
            return
        raw = frame.get("text")
        if raw is None:
            data = frame.get("bytes") or b""
            if len(data) > limit:
                await _close(connection, CLOSE_TOO_BIG, f"frames are limited to {limit} bytes")
                return
            connection.error("bad_message", "send JSON text frames")
            continue
        if len(raw) > limit:
            await _close(connection, CLOSE_TOO_BIG, f"frames are limited to {limit} bytes")
            return
        now = time.monotonic()
        connection.last_heard = now
        if not connection.allow_message(now):
            flood_strikes += 1
            if flood_strikes > connection.settings.ws_messages_per_second * 5:
                await _close(connection, CLOSE_POLICY, "message flood")
                return
            connection.error("rate_limited", "too many messages; slow down")
            continue
        flood_strikes = 0
        try:
            message = loads(raw)
        except NestedTooDeep as exc:
            connection.error("bad_message", str(exc))
            continue
        except ValueError:
            connection.error("bad_message", "not valid JSON")
            continue
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            connection.error("bad_message", "every message is a JSON object with a string `type`")
            continue
        if message["type"] == "pong":
            continue
        if connection.token_expired():  # the expiry task may not have run yet
            await _close(connection, CLOSE_TOKEN, TOKEN_EXPIRED)
            return
        handler = _refresh if message["type"] == "refresh" else on_message
        try:
            await handler(connection, message)
        except Exception as exc:
            if is_retryable(exc):  # the database or Redis failed under it, not the message
                log.warning("websocket %s: retryable %r", message.get("type"), exc)
                connection.error("retry", "a backing service failed; send it again", message)
                continue
            log.exception("websocket handler failed for %s", message.get("type"))
            connection.error("internal_error", "the message could not be handled; retry", message)
