from __future__ import annotations

import uuid
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, EmailStr, Field

from dispatch.core.text import DisplayText, canonical_email, lookalike_problem


def _plain_email(value: str) -> str:
    problem = lookalike_problem(canonical_email(value))
    if problem is not None:
        raise ValueError(f"this email could pass for another one: {problem}")
    return value


def _canonical_before_parsing(value: object) -> object:
    return canonical_email(value) if isinstance(value, str) else value


Email = Annotated[
    EmailStr, BeforeValidator(_canonical_before_parsing), AfterValidator(_plain_email)
]


class Vehicle(BaseModel):
    model_config = ConfigDict(extra="forbid")

    make: str = Field(min_length=1, max_length=60)
    model: str = Field(min_length=1, max_length=60)
    color: str | None = Field(default=None, max_length=30)
    plate: str = Field(min_length=1, max_length=20)


class VehicleInput(Vehicle):
    """A vehicle as a driver registers it; riders see these words."""

    make: DisplayText = Field(min_length=1, max_length=60)
    model: DisplayText = Field(min_length=1, max_length=60)
    color: DisplayText | None = Field(default=None, max_length=30)
    plate: DisplayText = Field(min_length=1, max_length=20)


class RegisterRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: Email
    password: str = Field(min_length=8, max_length=256)
    name: DisplayText = Field(min_length=1, max_length=120)
    role: Literal["rider", "driver"]
    # Any form people write (`(212) 555-0100`, `+44 20 7946 0958`); stored as E.164.
    phone: str | None = Field(default=None, max_length=32)
    vehicle: VehicleInput | None = None


class RegistrationAccepted(BaseModel):
    """The same answer whether or not the email already had an account (no enumeration)."""

    status: Literal["accepted"] = "accepted"
    detail: str = (
        "if no account used this email, it has been created: log in with the password you chose"
    )


class UserRead(BaseModel):
    id: uuid.UUID
    email: str
    name: str
    role: str
    phone: str | None = None
    vehicle: Vehicle | None = None


class TokenResponse(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int
