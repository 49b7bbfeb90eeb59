from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import Boolean, DateTime, Enum, ForeignKey, String, func
from sqlalchemy.orm import Mapped, mapped_column

from dispatch.core.database import Base


class Role(enum.StrEnum):
    rider = "rider"
    driver = "driver"
    operator = "operator"


class UserAccount(Base):
    __tablename__ = "user_account"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(120))
    phone: Mapped[str | None] = mapped_column(String(32))
    role: Mapped[Role] = mapped_column(Enum(Role, name="role", native_enum=False, length=16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Driver(Base):
    __tablename__ = "driver"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("user_account.id", ondelete="CASCADE"), primary_key=True
    )
    vehicle_make: Mapped[str | None] = mapped_column(String(60))
    vehicle_model: Mapped[str | None] = mapped_column(String(60))
    vehicle_color: Mapped[str | None] = mapped_column(String(30))
    vehicle_plate: Mapped[str | None] = mapped_column(String(20))
    is_online: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    status_changed_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
