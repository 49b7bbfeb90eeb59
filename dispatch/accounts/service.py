from __future__ import annotations

import asyncio
import uuid

import phonenumbers
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.accounts.models import Driver, Role, UserAccount
from dispatch.accounts.repository import AccountRepository
from dispatch.accounts.schemas import RegisterRequest, UserRead, Vehicle
from dispatch.core.errors import Conflict, Unauthorized, Unprocessable
from dispatch.core.rate_limit import Budget, claim, give_back
from dispatch.core.redis import Redis
from dispatch.core.security import TokenClaims, hash_password, verify_password
from dispatch.core.settings import Settings
from dispatch.core.text import canonical_email

# Verified against when the email is unknown, so timing does not reveal which emails exist.
_DUMMY_HASH = hash_password("not-a-real-password")


def registration_budgets(settings: Settings, email: str, address: str) -> list[Budget]:
    return [
        Budget("register:address", address, settings.register_per_address_per_hour, 3600),
        Budget("register:email", email.lower(), settings.register_per_email_per_hour, 3600),
    ]


def e164(phone: str, default_region: str) -> str:
    """A phone as E.164 (`+12125550100`); 422 for anything that is not a possible number."""
    try:
        number = phonenumbers.parse(phone, default_region)
    except phonenumbers.NumberParseException:
        number = None
    if number is None or not phonenumbers.is_possible_number(number):
        raise Unprocessable(
            "phone: not a phone number we can read; write it with its country code, "
            "e.g. +1 212 555 0100",
            code="invalid_phone",
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


async def register(session: AsyncSession, body: RegisterRequest, settings: Settings) -> None:
    """Create the account unless the email is taken, and answer alike either way.

    Both paths hash the password (the argon2 work is most of the time) and send the same insert,
    which a taken email turns into no row; so the answer's timing does not tell that the email
    has an account. Only a new driver's profile is one more insert.
    """
    phone = e164(body.phone, settings.phone_default_region) if body.phone else None
    password_hash = await asyncio.to_thread(hash_password, body.password)
    user_id = await _create_account(
        session, body.email, password_hash, body.name, Role(body.role), phone
    )
    if user_id is not None and body.role == Role.driver.value:
        vehicle = body.vehicle
        AccountRepository(session).add(
            Driver(
                user_id=user_id,
                vehicle_make=vehicle.make if vehicle else None,
                vehicle_model=vehicle.model if vehicle else None,
                vehicle_color=vehicle.color if vehicle else None,
                vehicle_plate=vehicle.plate if vehicle else None,
            )
        )
        await session.flush()


async def _create_account(
    session: AsyncSession,
    email: str,
    password_hash: str,
    name: str,
    role: Role,
    phone: str | None = None,
) -> uuid.UUID | None:
    """The new account's id, or None when the email is taken (also by a concurrent request)."""
    return await AccountRepository(session).add_user_if_new(
        {
            "id": uuid.uuid4(),
            "email": email.lower(),
            "password_hash": password_hash,
            "name": name,
            "phone": phone,
            "role": role,
        }
    )


async def create_operator(
    session: AsyncSession, email: str, password: str, name: str
) -> UserAccount:
    """Operators are made on the command line, never through the API, so a taken email may
    be said plainly."""
    if len(password) < 8:
        raise Unprocessable("the password needs at least 8 characters", code="weak_password")
    password_hash = await asyncio.to_thread(hash_password, password)
    user_id = await _create_account(
        session, canonical_email(email), password_hash, name, Role.operator
    )
    user = await AccountRepository(session).user(user_id) if user_id is not None else None
    if user is None:
        raise Conflict("an account with this email already exists", code="email_taken")
    return user


def login_budgets(settings: Settings, email: str, address: str) -> list[Budget]:
    """Failed logins, counted per (address, account) and, with a higher ceiling, per account:
    a stranger's wrong guesses use up their own budget, not the owner's."""
    account = canonical_email(email)
    return [
        Budget("login:pair", f"{address}|{account}", settings.login_attempts_per_minute),
        Budget("login:account", account, settings.login_account_attempts_per_minute),
    ]


async def authenticate(
    session: AsyncSession,
    redis: Redis,
    settings: Settings,
    email: str,
    password: str,
    address: str,
) -> UserAccount:
    budgets = login_budgets(settings, email, address)
    # Counted before the password is checked, so simultaneous guesses cannot all pass the check
    # before any of them is counted; a right password hands its attempt back.
    await claim(redis, budgets, "too many failed logins; wait and retry", code="login_rate_limited")
    user = await AccountRepository(session).by_email(canonical_email(email))
    # argon2 off the event loop (as sign-up's hash): ~30 ms each, which every socket and request
    # of the process waited out, ten times over for a burst of guesses.
    stored = _DUMMY_HASH if user is None else user.password_hash
    right = await asyncio.to_thread(verify_password, stored, password)
    if user is None or not right:
        raise Unauthorized("wrong email or password", code="bad_credentials")
    await give_back(redis, budgets)
    return user


async def token_account_current(session: AsyncSession, claims: TokenClaims) -> bool:
    """A well-signed token can outlive its account (deleted, or its role changed): it then
    authorizes nothing, on REST or WebSocket. One primary-key read."""
    user = await AccountRepository(session).user(claims.user_id)
    return user is not None and user.role.value == claims.role


def vehicle_of(driver: Driver | None) -> Vehicle | None:
    if driver is None or driver.vehicle_make is None or driver.vehicle_model is None:
        return None
    return Vehicle(
        make=driver.vehicle_make,
        model=driver.vehicle_model,
        color=driver.vehicle_color,
        plate=driver.vehicle_plate or "",
    )


def user_read(user: UserAccount, driver: Driver | None = None) -> UserRead:
    return UserRead(
        id=user.id,
        email=user.email,
        name=user.name,
        role=user.role.value,
        phone=user.phone,
        vehicle=vehicle_of(driver),
    )


async def set_driver_online(session: AsyncSession, driver_id: uuid.UUID, online: bool) -> Driver:
    from dispatch.core.clock import utcnow
    from dispatch.core.errors import NotFound

    driver = await AccountRepository(session).driver(driver_id, for_update=True)
    if driver is None:
        raise NotFound("driver profile not found", code="driver_not_found")
    if driver.is_online != online:
        driver.is_online = online
        driver.status_changed_at = utcnow()
    await session.flush()
    return driver
