"""Helpers for the reliability suite: many accounts at once, and the figures each test records
(the region and dispatch helpers are in tests/fixtures/)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from dispatch.core import clock
from dispatch.core.database import transaction
from tests.conftest import Account
from tests.governance.conftest import make_members, operator  # noqa: F401 - fixtures for votes

_PASSWORD_HASH: list[str] = []


async def bulk_accounts(app: Any, role: str, count: int) -> list[Account]:
    """Many accounts at once, straight into the tables (argon2 per account would dominate)."""
    from dispatch.accounts.models import Driver, Role, UserAccount
    from dispatch.core.security import hash_password, issue_access_token

    if not _PASSWORD_HASH:
        _PASSWORD_HASH.append(hash_password("not-used-for-login"))
    settings = app.state.settings
    accounts = []
    ids = [uuid.uuid4() for _ in range(count)]
    async with transaction(app.state) as session:
        session.add_all(
            UserAccount(
                id=user_id,
                email=f"{role}-{user_id.hex}@bulk.coop",
                password_hash=_PASSWORD_HASH[0],
                name=f"Bulk {role}",
                role=Role(role),
            )
            for user_id in ids
        )
        await session.flush()
        if role == "driver":
            session.add_all(
                Driver(user_id=user_id, vehicle_plate="BULK", is_online=True) for user_id in ids
            )
    # Tokens carry real time even when a test has moved the app's clock (PyJWT checks real time).
    moved = clock._offset
    clock.reset()
    try:
        for user_id in ids:
            token = issue_access_token(settings, user_id, role)
            accounts.append(Account(str(user_id), f"{user_id}@bulk", token, role))
    finally:
        clock.advance(moved)
    return accounts


FIGURES_DIR = Path(__file__).resolve().parents[2] / ".local" / "reliability"


def record_figures(name: str, figures: dict[str, Any]) -> None:
    """Keep each test's last figures (docs/reliability.md quotes them) and print them."""
    FIGURES_DIR.mkdir(parents=True, exist_ok=True)
    (FIGURES_DIR / f"{name}.json").write_text(json.dumps(figures, indent=2, default=str) + "\n")
    print(f"\n[figures] {name}: {json.dumps(figures, default=str)}")
