"""How governance plugs into the app without the core importing it."""

from __future__ import annotations

from fastapi import FastAPI

from governance.membership import driving_gate


def install(app: FastAPI) -> None:
    # Checks COOP_REQUIRE_MEMBERSHIP_TO_DRIVE on every call, so it can be turned on at any time.
    app.state.driving_gate = driving_gate
