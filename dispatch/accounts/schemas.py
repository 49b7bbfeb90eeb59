from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field


class Vehicle(BaseModel):
    model_config = ConfigDict(extra="forbid")

    make: str = Field(min_length=1, max_length=60)
    model: str = Field(min_length=1, max_length=60)
    color: str | None = Field(default=None, max_length=30)
    plate: str = Field(min_length=1, max_length=20)


class RegisterRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: EmailStr
    password: str = Field(min_length=8, max_length=256)
    name: str = Field(min_length=1, max_length=120)
    role: Literal["rider", "driver"]
    phone: str | None = Field(default=None, max_length=32)
    vehicle: Vehicle | None = None


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
