"""`coop-dispatch`: migrate, serve, api, dispatcher, demo, and the commands other packages add."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dispatch.core import command_line
from dispatch.core.settings import get_settings

if TYPE_CHECKING:
    from fastapi import FastAPI


def _migrate(args: argparse.Namespace) -> int:
    from dispatch.migrate import upgrade

    upgrade()
    print("database migrated to the latest schema")
    return 0


def _database_ready() -> None:
    """Server roles start only when PostgreSQL answers and is at this code's migration head: a
    wrong URL, a database that is down or one never migrated is one line and exit 2 here, not a
    failed lifespan's traceback (api), 500s on every request or tracebacks every batch
    (dispatcher). Outages after the start are ridden out as before."""
    from dispatch.core.database import schema_revisions
    from dispatch.migrate import schema_problem

    problem = schema_problem(asyncio.run(schema_revisions(get_settings())))
    if problem:
        raise command_line.CommandFailed(problem)


def _listening_sockets(host: str, port: int) -> list[socket.socket]:
    """Bound here as asyncio's create_server binds them (every address the host resolves to), so
    a port in use or a bad host is one line; uvicorn would log it and exit 3."""
    sockets: list[socket.socket] = []
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        for family, kind, proto, _, address in dict.fromkeys(addresses):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
    except OSError as error:
        for sock in sockets:
            sock.close()
        raise command_line.CommandFailed(
            f"cannot listen on {host}:{port}: {error.strerror or error}"
        ) from error
    return sockets


def _uvicorn(args: argparse.Namespace, factory: Callable[[], FastAPI]) -> int:
    import uvicorn
    from uvicorn.server import HANDLED_SIGNALS

    from dispatch.core.http_protocol import HttpProtocol
    from dispatch.core.websocket_protocol import WebSocketProtocol

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # uvicorn's, without raising the stop signal again once stopped: that would end the
            # process before the app's shutdown, which runs after `serve` here.
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in HANDLED_SIGNALS}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    log = logging.getLogger("uvicorn.error")  # uvicorn's own messages, at its log level
    _database_ready()
    settings = get_settings()
    sockets = _listening_sockets(args.host, args.port)
    app = factory()
    server = Server(
        uvicorn.Config(
            app,
            host=args.host,
            port=args.port,
            http=HttpProtocol,
            ws=WebSocketProtocol,
            ws_max_size=settings.ws_max_frame_bytes * 4,
            log_level=args.log_level,
            proxy_headers=True,
            forwarded_allow_ips=settings.forwarded_allow_ips,
            # Run below, so a failed startup raises here (uvicorn would log it and exit 3).
            lifespan="off",
        )
    )

    async def serve() -> None:
        async with contextlib.AsyncExitStack() as stack:
            try:
                await stack.enter_async_context(app.router.lifespan_context(app))
            except Exception as error:
                raise command_line.CommandFailed(
                    f"startup failed: {command_line.describe(error)}"
                ) from error
            for sock in sockets:
                log.info("listening on %s port %d", *sock.getsockname()[:2])
            await server.serve(sockets)

    try:
        with asyncio.Runner(loop_factory=server.config.get_loop_factory()) as runner:
            runner.run(serve())
    finally:
        for sock in sockets:
            sock.close()
    return 0


def _serve(args: argparse.Namespace) -> int:
    from dispatch.entrypoints import api_and_dispatcher

    return _uvicorn(args, api_and_dispatcher)


def _api(args: argparse.Namespace) -> int:
    from dispatch.entrypoints import api_only

    return _uvicorn(args, api_only)


def _dispatcher(args: argparse.Namespace) -> int:
    from dispatch.entrypoints import run_dispatcher

    _database_ready()
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    loop = asyncio.new_event_loop()
    task = loop.create_task(run_dispatcher(get_settings()))
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, task.cancel)
    try:
        loop.run_until_complete(task)
    except asyncio.CancelledError:
        pass
    finally:
        loop.close()
    return 0


def _demo(args: argparse.Namespace) -> int:
    from dispatch.entrypoints import seed_demo_coop

    _database_ready()
    for login in asyncio.run(seed_demo_coop(get_settings())):
        print(f"  {login.role:9} {login.name:14} {login.email:22} password: {login.password}")
    print("  members have an open proposal to vote on: GET /v1/governance/proposals?status=open")
    return 0


def _seed(args: argparse.Namespace) -> int:
    from loadtests.seeding import DEFAULT_CREDENTIALS, seed_load_accounts

    _database_ready()
    credentials = args.credentials or DEFAULT_CREDENTIALS
    report = asyncio.run(
        seed_load_accounts(get_settings(), args.riders, args.drivers, credentials, args.token_ttl)
    )
    print(
        f"{report.riders} riders and {report.drivers} drivers ready ({report.created} new) "
        f"in {report.seconds:.1f}s; credentials in {report.credentials}"
        + (
            f"; {report.leftover_rides_closed} rides an earlier run left open were closed"
            if report.leftover_rides_closed
            else ""
        )
    )
    return 0


LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")  # uvicorn's; trace: API


def port(text: str) -> int:
    number = int(text)
    if not 0 <= number <= 65535:
        raise ValueError(text)  # argparse: "invalid port value"
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = command_line.OneLineParser(prog="coop-dispatch", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="apply database migrations").set_defaults(run=_migrate)
    for name, run, help_text in (
        ("serve", _serve, "API and dispatcher in one process"),
        ("api", _api, "the API role only (run any number)"),
    ):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("--host", default="127.0.0.1")
        command.add_argument("--port", type=port, default=8000)
        command.add_argument("--log-level", choices=LOG_LEVELS, default="info")
        command.set_defaults(run=run)
    dispatcher = commands.add_parser("dispatcher", help="the dispatcher role only (run any number)")
    dispatcher.add_argument("--log-level", choices=LOG_LEVELS[:-1], default="info")
    dispatcher.set_defaults(run=_dispatcher)
    commands.add_parser("demo", help="seed the demo co-op (idempotent)").set_defaults(run=_demo)
    seed = commands.add_parser("seed", help="bulk-create load-test riders and drivers (idempotent)")
    seed.add_argument("--riders", type=int, default=100)
    seed.add_argument("--drivers", type=int, default=400)
    seed.add_argument("--credentials", type=Path, default=None, help="where to write the logins")
    seed.add_argument("--token-ttl", type=int, default=6 * 3600, help="access token lifetime, s")
    seed.set_defaults(run=_seed)
    for register in command_plugins():
        register(commands)
    return parser


def command_plugins() -> list[Callable[[Any], None]]:
    from dispatch.simulation import add_simulate_command
    from governance.commands import register_governance_commands, register_operator_commands

    return [register_operator_commands, register_governance_commands, add_simulate_command]


def main(argv: list[str] | None = None) -> int:
    """Every failure is one line on stderr and exit status 2 (`dispatch.core.command_line`)."""
    return command_line.run(build_parser(), argv, lambda args: int(args.run(args) or 0))


if __name__ == "__main__":
    sys.exit(main())
