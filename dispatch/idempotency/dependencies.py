"""`Idempotency-Key` on state-changing POSTs: one effect and one answer, however many retries.

As in Stripe's API: the first response for a (user, key) is saved with the effect, in the same
transaction, and replayed byte for byte to every retry; the same key with another request is
refused. Concurrent retries queue on the key's row, so five at once still give one effect.

A route opts in with two things: `route_class=IdempotentRoute` on its router (it saves the
response before the request's transaction commits) and an `IdempotencyDep` parameter.
Only successful (2xx) responses are saved: an error rolls the claim back with everything else,
and a retry runs again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Header, Request, Response
from fastapi.routing import APIRoute

from dispatch.accounts.dependencies import current_claims
from dispatch.core.clock import utcnow
from dispatch.core.database import SessionDep
from dispatch.core.errors import Conflict, Unprocessable
from dispatch.core.security import TokenClaims
from dispatch.idempotency.repository import IdempotencyRepository

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"


@dataclass
class Claim:
    """This request owns its key; the route class stores the response under it."""

    repository: IdempotencyRepository
    claims: TokenClaims
    key: str

    async def save(self, response: Response) -> None:
        await self.repository.save_response(
            self.claims.user_id, self.key, response.status_code, bytes(response.body)
        )


class Replay(Exception):
    """Not an error: the saved answer, short-circuiting the handler."""

    def __init__(self, status_code: int, body: bytes) -> None:
        super().__init__(status_code)
        self.status_code = status_code
        self.body = body

    def response(self) -> Response:
        return Response(
            self.body,
            status_code=self.status_code,
            media_type="application/json",
            headers={REPLAYED_HEADER: "true"},
        )


def request_fingerprint(method: str, path: str, body: bytes) -> str:
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    except ValueError:
        canonical = body
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode(), canonical):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def _busy() -> Conflict:
    return Conflict("this Idempotency-Key is in use right now; retry", code="idempotency_key_busy")


async def claim_idempotency_key(
    request: Request,
    session: SessionDep,
    claims: Annotated[TokenClaims, Depends(current_claims)],
    key: Annotated[str | None, Header(alias=HEADER, min_length=1, max_length=200)] = None,
) -> Claim | None:
    if key is None:
        return None
    if not isinstance(request.scope.get("route"), IdempotentRoute):
        raise RuntimeError(f"{request.url.path} takes {HEADER} but lacks IdempotentRoute")
    repository = IdempotencyRepository(session)
    fingerprint = request_fingerprint(request.method, request.url.path, await request.body())
    if await repository.claim(
        claims.user_id, key, request.method, request.url.path, fingerprint, utcnow()
    ):
        claim = Claim(repository, claims, key)
        request.state.idempotency_claim = claim
        return claim
    saved = await repository.get(claims.user_id, key)
    if saved is None:  # claimed and released between our two statements: extremely rare
        raise _busy()
    if saved.request_hash != fingerprint:
        raise Unprocessable(
            "this Idempotency-Key was used with a different request", code="idempotency_key_reused"
        )
    if saved.status_code is None or saved.response_body is None:
        raise _busy()
    raise Replay(saved.status_code, saved.response_body)


IdempotencyDep = Annotated[Claim | None, Depends(claim_idempotency_key)]


class IdempotentRoute(APIRoute):
    """Replays saved answers and saves first answers before the request's transaction commits.

    It relies on the session dependency being function-scoped (`SessionDep`): FastAPI closes it
    after this handler returns and before the response is sent.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                response = await handler(request)
            except Replay as replay:
                return replay.response()
            claim: Claim | None = getattr(request.state, "idempotency_claim", None)
            if claim is not None and 200 <= response.status_code < 300:
                await claim.save(response)
            return response

        return handle
