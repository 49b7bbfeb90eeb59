"""One error base carrying its HTTP status; one handler turns it into JSON."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


class CoopError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class BadRequest(CoopError):
    status_code = 400
    code = "bad_request"


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


class Unavailable(CoopError):
    status_code = 503
    code = "unavailable"


def error_body(error: CoopError) -> dict[str, str]:
    return {"error": error.code, "detail": error.message}


def install_error_handlers(app: FastAPI) -> None:
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, CoopError)
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
        return JSONResponse(error_body(exc), status_code=exc.status_code, headers=headers)

    app.add_exception_handler(CoopError, handle)


def responses(*errors: type[CoopError]) -> dict[int | str, dict[str, str]]:
    """OpenAPI `responses=` for the errors a route declares."""
    return {e.status_code: {"description": e.__name__} for e in errors}
