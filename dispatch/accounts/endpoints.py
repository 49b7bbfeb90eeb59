from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.security import OAuth2PasswordRequestForm

from dispatch.accounts import service
from dispatch.accounts.dependencies import CurrentUser, SettingsDep
from dispatch.accounts.repository import AccountRepository
from dispatch.accounts.schemas import (
    RegisterRequest,
    RegistrationAccepted,
    TokenResponse,
    UserRead,
)
from dispatch.core.database import SessionDep
from dispatch.core.errors import (
    NotFound,
    TooManyRequests,
    Unauthorized,
    Unprocessable,
    responses,
)
from dispatch.core.rate_limit import ClientAddress, take
from dispatch.core.redis import RedisDep
from dispatch.core.security import issue_access_token

router = APIRouter(prefix="/v1/auth", tags=["auth"])


@router.post("/register", status_code=202, responses=responses(Unprocessable, TooManyRequests))
async def register(
    body: RegisterRequest,
    session: SessionDep,
    redis: RedisDep,
    settings: SettingsDep,
    address: ClientAddress,
) -> RegistrationAccepted:
    await take(
        redis,
        service.registration_budgets(settings, body.email, address),
        "too many registrations; wait and retry",
        code="registration_rate_limited",
        open_when_unreachable=True,
    )
    await service.register(session, body, settings)
    return RegistrationAccepted()


@router.post("/token", responses=responses(Unauthorized, TooManyRequests))
async def token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    session: SessionDep,
    redis: RedisDep,
    settings: SettingsDep,
    address: ClientAddress,
) -> TokenResponse:
    user = await service.authenticate(
        session, redis, settings, form.username, form.password, address
    )
    return TokenResponse(
        access_token=issue_access_token(settings, user.id, user.role.value),
        expires_in=settings.access_token_ttl_s,
    )


@router.get("/me", responses=responses(Unauthorized, NotFound))
async def me(claims: CurrentUser, session: SessionDep) -> UserRead:
    repository = AccountRepository(session)
    user = await repository.user(claims.user_id)
    if user is None:
        raise NotFound("account not found", code="account_not_found")
    return service.user_read(user, await repository.driver(user.id))
