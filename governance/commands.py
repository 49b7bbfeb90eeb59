"""`coop-dispatch operator create` and `coop-dispatch governance verify`."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from typing import Any

from dispatch.accounts.service import create_operator
from dispatch.core.database import transaction
from dispatch.core.settings import Settings, get_settings
from dispatch.core.state import ProcessState
from governance import audit


async def _with_session(settings: Settings, work: Any) -> Any:
    state = ProcessState.open(settings, pool_size=1, max_overflow=0)
    try:
        async with transaction(state) as session:
            return await work(session)
    finally:
        await state.close()


def _operator_create(args: argparse.Namespace) -> int:
    password = args.password or getpass.getpass("password for the operator: ")
    name = args.name or args.email.split("@", 1)[0]

    async def work(session: Any) -> Any:
        return await create_operator(session, args.email, password, name)

    user = asyncio.run(_with_session(get_settings(), work))  # CoopError: one line, exit 2
    print(f"operator {user.email} created (id {user.id})")
    return 0


def _verify(args: argparse.Namespace) -> int:
    report: audit.Report = asyncio.run(_with_session(get_settings(), audit.verify))
    if not report.ok:
        print(f"governance log FAILED verification: {report.finding}", file=sys.stderr)
        return 1
    print(
        f"governance log verified: {report.entries} entries, "
        f"{report.proposals_checked} tallies recomputed, head {report.head_hash}"
    )
    return 0


def register_operator_commands(commands: Any) -> None:
    operator = commands.add_parser("operator", help="manage operator accounts")
    actions = operator.add_subparsers(dest="operator_command", required=True)
    create = actions.add_parser(
        "create", help="create an operator (operators cannot self-register)"
    )
    create.add_argument("--email", required=True)
    create.add_argument("--password", help="prompted for when left out")
    create.add_argument("--name")
    create.set_defaults(run=_operator_create)


def register_governance_commands(commands: Any) -> None:
    governance = commands.add_parser("governance", help="governance tools")
    actions = governance.add_subparsers(dest="governance_command", required=True)
    verify = actions.add_parser(
        "verify", help="recompute the audit log's hash chain and every tally; non-zero on tampering"
    )
    verify.set_defaults(run=_verify)
