"""OpenAPI additions: the 401/403 every authenticated operation can return, the 422 an
`Idempotency-Key` reused with another request gets, the 413 of an oversized body, and the links
between operations (what a client does next with an id it was given), which clients and
stateful fuzzers (schemathesis) follow."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

AUTH_ERRORS = {
    "401": {"description": "Unauthorized: a missing, invalid or expired bearer token"},
    "403": {"description": "Forbidden: the caller's role or membership does not allow this"},
}

# Our error body: a CoopError's detail is a sentence, a validation error's a list of problems.
ERROR_SCHEMA = {
    "title": "Error",
    "type": "object",
    "required": ["error", "detail"],
    "properties": {
        "error": {"type": "string"},
        "detail": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}]},
    },
}


def document_idempotency_errors(schema: dict[str, Any]) -> None:
    """Operations taking an `Idempotency-Key` may answer 422 `idempotency_key_reused` with our
    error body, beside FastAPI's validation errors (found by schemathesis)."""
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            if not isinstance(operation, dict):
                continue
            headers = [p for p in operation.get("parameters", []) if p.get("in") == "header"]
            if not any(p.get("name", "").lower() == "idempotency-key" for p in headers):
                continue
            response = operation.setdefault("responses", {}).setdefault(
                "422", {"description": "Unprocessable"}
            )
            content = response.setdefault("content", {}).setdefault("application/json", {})
            known = [content["schema"]] if "schema" in content else []
            content["schema"] = {"anyOf": [*known, {"$ref": "#/components/schemas/Error"}]}
            schema.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA


def document_body_limit(schema: dict[str, Any]) -> None:
    """Every operation with a body may answer 413 `request_too_large` (`http_guards.py`)."""
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            if isinstance(operation, dict) and "requestBody" in operation:
                operation.setdefault("responses", {}).setdefault(
                    "413",
                    {
                        "description": "Request body over COOP_MAX_REQUEST_BODY_BYTES",
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                        },
                    },
                )
                schema.setdefault("components", {}).setdefault("schemas", {})["Error"] = (
                    ERROR_SCHEMA
                )


# (method, path, status) -> [(link name, target method, target path, parameters, request body)]
LINKS: dict[tuple[str, str, str], list[tuple[str, str, str, dict[str, str], Any]]] = {
    ("post", "/v1/rider/quotes", "201"): [
        ("RequestRide", "post", "/v1/rider/rides", {}, {"quote_id": "$response.body#/id"}),
    ],
    ("post", "/v1/rider/rides", "201"): [
        ("GetRide", "get", "/v1/rider/rides/{ride_id}", {"ride_id": "$response.body#/id"}, None),
        (
            "CancelRide",
            "post",
            "/v1/rider/rides/{ride_id}/cancel",
            {"ride_id": "$response.body#/id"},
            None,
        ),
    ],
    ("post", "/v1/governance/proposals", "201"): [
        (
            "GetProposal",
            "get",
            "/v1/governance/proposals/{proposal_id}",
            {"proposal_id": "$response.body#/id"},
            None,
        ),
        (
            "Vote",
            "post",
            "/v1/governance/proposals/{proposal_id}/votes",
            {"proposal_id": "$response.body#/id"},
            None,
        ),
        (
            "Impact",
            "get",
            "/v1/governance/proposals/{proposal_id}/impact",
            {"proposal_id": "$response.body#/id"},
            None,
        ),
    ],
    ("post", "/v1/governance/members", "201"): [
        (
            "Suspend",
            "post",
            "/v1/governance/members/{user_id}/suspend",
            {"user_id": "$response.body#/user_id"},
            None,
        ),
        (
            "Reinstate",
            "post",
            "/v1/governance/members/{user_id}/reinstate",
            {"user_id": "$response.body#/user_id"},
            None,
        ),
    ],
}


def add_links(schema: dict[str, Any]) -> None:
    paths = schema.get("paths", {})
    for (method, path, status), links in LINKS.items():
        response = paths.get(path, {}).get(method, {}).get("responses", {}).get(status)
        if response is None:
            continue
        for name, target_method, target_path, parameters, body in links:
            target = paths.get(target_path, {}).get(target_method)
            if target is None or "operationId" not in target:
                continue
            link: dict[str, Any] = {"operationId": target["operationId"]}
            if parameters:
                link["parameters"] = parameters
            if body is not None:
                link["requestBody"] = body
            response.setdefault("links", {})[name] = link


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
            document_idempotency_errors(schema)
            document_body_limit(schema)
            add_links(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
