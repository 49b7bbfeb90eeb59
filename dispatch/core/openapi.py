"""Every authenticated operation declares the 401 and 403 its auth dependencies can return."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

AUTH_ERRORS = {
    "401": {"description": "Unauthorized: a missing, invalid or expired bearer token"},
    "403": {"description": "Forbidden: the caller's role or membership does not allow this"},
}


def document_auth_errors(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                description=app.description,
                routes=app.routes,
            )
            for path_item in schema.get("paths", {}).values():
                for operation in path_item.values():
                    if isinstance(operation, dict) and operation.get("security"):
                        responses = operation.setdefault("responses", {})
                        for code, body in AUTH_ERRORS.items():
                            responses.setdefault(code, body)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
