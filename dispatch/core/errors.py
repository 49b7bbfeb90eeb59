"""One error base carrying its HTTP status; one handler turns it into JSON."""

from __future__ import annotations

import logging

import redis.exceptions
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc

log = logging.getLogger(__name__)

RETRY_AFTER_S = 1

# SQLSTATEs after which the same request may simply be sent again: serialization failure,
# deadlock, the server shutting down or killing our backend, connection failures.
RETRYABLE_SQLSTATES = frozenset(
    {"40001", "40P01", "57P01", "57P02", "57P03", "08000", "08001", "08003", "08004", "08006"}
)


class CoopError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class Unauthorized(CoopError):
    status_code = 401
    code = "unauthorized"


class Forbidden(CoopError):
    status_code = 403
    code = "forbidden"


class NotFound(CoopError):
    status_code = 404
    code = "not_found"


class Conflict(CoopError):
    status_code = 409
    code = "conflict"


class Gone(CoopError):
    status_code = 410
    code = "gone"


class Unprocessable(CoopError):
    status_code = 422
    code = "unprocessable"


class TooManyRequests(CoopError):
    status_code = 429
    code = "too_many_requests"

    def __init__(self, message: str, *, code: str | None = None, retry_after_s: int = 60) -> None:
        super().__init__(message, code=code)
        self.retry_after_s = max(1, retry_after_s)


class Unavailable(CoopError):
    status_code = 503
    code = "unavailable"


def error_body(error: CoopError) -> dict[str, str]:
    return {"error": error.code, "detail": error.message}


def is_retryable(exc: BaseException) -> bool:
    """A failure of the connection or of a concurrent transaction, not of the request itself."""
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, sa_exc.TimeoutError | redis.exceptions.ConnectionError):
        return True  # pool exhausted; Redis unreachable (its TimeoutError is a ConnectionError)
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        sqlstate = getattr(current, "sqlstate", None) or getattr(current, "pgcode", None)
        if sqlstate in RETRYABLE_SQLSTATES:
            return True
        if isinstance(current, ConnectionError | TimeoutError) or type(current).__name__ in (
            "ConnectionDoesNotExistError",
            "InterfaceError",
        ):
            return True
        current = getattr(current, "orig", None) or current.__cause__ or current.__context__
    return False


def unavailable_response(exc: BaseException) -> JSONResponse:
    body = error_body(
        Unavailable(
            f"a backing service failed ({type(exc).__name__}); retry, with the same "
            "Idempotency-Key if the request changes anything",
            code="retry",
        )
    )
    return JSONResponse(body, status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})


def install_error_handlers(app: FastAPI) -> None:
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, CoopError)
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
        if isinstance(exc, TooManyRequests):
            headers = {"Retry-After": str(exc.retry_after_s)}
        return JSONResponse(error_body(exc), status_code=exc.status_code, headers=headers)

    async def backing_service_failed(request: Request, exc: Exception) -> JSONResponse:
        # The request's transaction was rolled back (or never committed): the client can retry,
        # safely so with an Idempotency-Key.
        # WebSocket handshakes land here too, and have no HTTP method.
        method = getattr(request, "method", "WS")
        if is_retryable(exc):
            log.warning("%s %s: retryable %r", method, request.url.path, exc)
            return unavailable_response(exc)
        log.error("%s %s failed", method, request.url.path, exc_info=exc)
        return JSONResponse(
            {"error": "internal_error", "detail": "the request failed"}, status_code=500
        )

    app.add_exception_handler(CoopError, handle)
    for kind in (sa_exc.SQLAlchemyError, redis.exceptions.RedisError, OSError):
        app.add_exception_handler(kind, backing_service_failed)


def responses(*errors: type[CoopError]) -> dict[int | str, dict[str, str]]:
    """OpenAPI `responses=` for the errors a route declares."""
    return {e.status_code: {"description": e.__name__} for e in errors}
