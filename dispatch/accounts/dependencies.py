"""Who is calling: bearer token on REST, header or `token` query parameter on WebSockets."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from fastapi.security import OAuth2PasswordBearer
from starlette.requests import HTTPConnection

from dispatch.accounts.models import Role
from dispatch.accounts.service import token_account_current
from dispatch.core.database import SessionDep
from dispatch.core.errors import Forbidden, Unauthorized
from dispatch.core.security import TokenClaims, decode_access_token
from dispatch.core.settings import Settings

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/v1/auth/token", auto_error=False)


def get_settings_dep(connection: HTTPConnection) -> Settings:
    """The settings the app was created with (`create_app(settings)`), as its sockets read them."""
    settings: Settings = connection.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


async def current_claims(
    settings: SettingsDep,
    token: Annotated[str | None, Depends(oauth2_scheme)],
    session: SessionDep,
) -> TokenClaims:
    if not token:
        raise Unauthorized("missing bearer token", code="missing_token")
    claims = decode_access_token(settings, token)
    if claims is None:
        raise Unauthorized("invalid or expired token", code="invalid_token")
    # Such a token once reached the database as a foreign key violation (a 500); the read shares
    # the request's session with the route.
    if not await token_account_current(session, claims):
        raise Unauthorized("this token's account no longer exists", code="invalid_token")
    return claims


def require_role(role: Role) -> object:
    async def dependency(claims: Annotated[TokenClaims, Depends(current_claims)]) -> TokenClaims:
        if claims.role != role.value:
            raise Forbidden(f"this route is for {role.value}s", code="wrong_role")
        return claims

    return dependency


CurrentUser = Annotated[TokenClaims, Depends(current_claims)]
CurrentRider = Annotated[TokenClaims, Depends(require_role(Role.rider))]
CurrentDriver = Annotated[TokenClaims, Depends(require_role(Role.driver))]
CurrentOperator = Annotated[TokenClaims, Depends(require_role(Role.operator))]


def websocket_token(request_headers: dict[str, str], query: dict[str, str]) -> str | None:
    authorization = request_headers.get("authorization", "")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value:
        return value.strip()
    return query.get("token") or None
