"""`coop-dispatch` as a user runs it (a real subprocess): every error is one line on stderr with
exit status 2, never a traceback, and `--json` output is strict JSON."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from alembic.script import ScriptDirectory

from dispatch.migrate import alembic_config
from tests.conftest import SERVER_URL, TEST_DB

CSV_HEADER = "pickup_datetime,pickup_latitude,pickup_longitude,dropoff_latitude,dropoff_longitude\n"
WINDOW = ["--start", "2013-01-01T00:00", "--end", "2013-01-01T00:05"]


def coop_dispatch(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dispatch.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **env},
    )


def assert_one_line_error(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stderr)
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert "error" in lines[0]
    for word in words:
        assert word in lines[0], lines[0]
    assert "Traceback" not in done.stderr


@pytest.fixture
def trips(tmp_path: Path) -> Path:
    path = tmp_path / "trips.csv"
    rows = [
        f"2013-01-01 00:0{minute}:{second:02d},40.75{i},-73.98{i},40.70{i},-74.00{i}\n"
        for i, (minute, second) in enumerate((m, s) for m in range(4) for s in (5, 25, 45))
    ]
    path.write_text(CSV_HEADER + "".join(rows))
    return path


@pytest.mark.parametrize(
    ("trips_arg", "words"),
    [
        ("missing.csv", ("missing.csv", "No such file")),
        (".", ("Is a directory",)),
        ("binary.csv", ("UnicodeDecodeError",)),
        ("columns.csv", ("needs pickup_datetime",)),
    ],
)
def test_simulate_with_a_file_it_cannot_read(
    tmp_path: Path, trips_arg: str, words: tuple[str, ...]
) -> None:
    (tmp_path / "binary.csv").write_bytes(bytes(range(128, 256)) * 4)
    (tmp_path / "columns.csv").write_text("when,where\n1,2\n")
    done = coop_dispatch("simulate", "--trips", str(tmp_path / trips_arg), *WINDOW, "--fleet", "3")
    assert_one_line_error(done, *words)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ((), ("required: command",)),
        (("teleport",), ("invalid choice: 'teleport'",)),
        (("simulate", "--trips", "t.csv", "--start", "noon", "--end", "x", "--fleet", "1"),
         ("--start", "noon")),
        (("seed", "--riders", "many"), ("--riders", "many")),
        (("api", "--port", "70000"), ("invalid port value: '70000'",)),
        (("dispatcher", "--log-level", "loud"), ("invalid choice: 'loud'",)),
        (("operator", "create"), ("--email",)),
    ],
)  # fmt: skip
def test_usage_errors_are_one_line(args: tuple[str, ...], words: tuple[str, ...]) -> None:
    assert_one_line_error(coop_dispatch(*args), *words)


def test_simulate_refuses_an_unknown_policy(trips: Path) -> None:
    done = coop_dispatch(
        "simulate", "--trips", str(trips), *WINDOW, "--fleet", "3", "--policies", "fastest"
    )
    assert_one_line_error(done, "unknown policy 'fastest'")


@pytest.mark.parametrize(
    "command",
    [
        ("migrate",),
        ("governance", "verify"),
        ("seed", "--riders", "1", "--drivers", "1"),
        ("api", "--port", "0"),
        ("serve", "--port", "0"),
        ("dispatcher",),
    ],
)
def test_an_unreachable_database_is_one_line(command: tuple[str, ...]) -> None:
    done = coop_dispatch(*command, COOP_DATABASE_URL="postgresql://postgres@127.0.0.1:9/nowhere")
    assert_one_line_error(done, "Connect call failed")


@pytest.fixture
def held_port() -> Iterator[int]:
    """A port another process listens on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


@pytest.mark.parametrize("command", ["api", "serve"])
def test_a_port_in_use_is_one_line(command: str, held_port: int) -> None:
    done = coop_dispatch(command, "--port", str(held_port))
    assert_one_line_error(done, f"cannot listen on 127.0.0.1:{held_port}", "Address already in use")


def test_a_host_that_does_not_resolve_is_one_line() -> None:
    done = coop_dispatch("api", "--host", "no-such-host.invalid", "--port", "0")
    assert_one_line_error(done, "cannot listen on no-such-host.invalid:0")


@pytest.mark.parametrize("command", ["api", "serve"])
def test_a_failed_startup_is_one_line(command: str) -> None:
    # PostgreSQL answers; the lifespan's first Redis command does not.
    done = coop_dispatch(command, "--port", "0", COOP_REDIS_URL="redis://127.0.0.1:9/0")
    assert_one_line_error(done, "startup failed", "Connection refused")


UNMIGRATED_DB = f"{TEST_DB}_unmigrated"
UNMIGRATED_URL = SERVER_URL.rsplit("/", 1)[0] + "/" + UNMIGRATED_DB
HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()


@pytest.fixture
async def unmigrated() -> AsyncIterator[asyncpg.Connection]:
    """An empty database of the test's own (a connection to it), dropped after."""
    admin = await asyncpg.connect(SERVER_URL.rsplit("/", 1)[0] + "/postgres")
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {UNMIGRATED_DB} WITH (FORCE)")
        await admin.execute(f"CREATE DATABASE {UNMIGRATED_DB}")
        connection = await asyncpg.connect(UNMIGRATED_URL)
        try:
            yield connection
        finally:
            await connection.close()
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {UNMIGRATED_DB} WITH (FORCE)")
        await admin.close()


SERVER_ROLES = [
    ("api", "--port", "0"),
    ("serve", "--port", "0"),
    ("dispatcher",),
    ("demo",),
    ("seed", "--riders", "1", "--drivers", "1"),
]


@pytest.mark.parametrize("command", SERVER_ROLES, ids=[role[0] for role in SERVER_ROLES])
async def test_a_never_migrated_database_is_one_line(
    unmigrated: asyncpg.Connection, command: tuple[str, ...]
) -> None:
    done = coop_dispatch(*command, COOP_DATABASE_URL=UNMIGRATED_URL)
    assert_one_line_error(
        done, "at no revision (never migrated)", f"needs {HEAD}", "run `coop-dispatch migrate`"
    )


async def test_a_database_behind_the_code_is_one_line(unmigrated: asyncpg.Connection) -> None:
    await unmigrated.execute(
        "CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY);"
        "INSERT INTO alembic_version VALUES ('0001')"
    )
    done = coop_dispatch("api", "--port", "0", COOP_DATABASE_URL=UNMIGRATED_URL)
    assert_one_line_error(done, "at revision 0001", f"needs {HEAD}", "run `coop-dispatch migrate`")


async def test_a_database_ahead_of_the_code_is_one_line(unmigrated: asyncpg.Connection) -> None:
    await unmigrated.execute(
        "CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY);"
        "INSERT INTO alembic_version VALUES ('9999')"
    )
    done = coop_dispatch("dispatcher", COOP_DATABASE_URL=UNMIGRATED_URL)
    assert_one_line_error(done, "at revision 9999, which this code does not know", f"needs {HEAD}")


async def test_migrate_is_what_a_never_migrated_database_needs(
    unmigrated: asyncpg.Connection,
) -> None:
    done = coop_dispatch("migrate", COOP_DATABASE_URL=UNMIGRATED_URL)
    assert done.returncode == 0, done.stderr
    assert await unmigrated.fetchval("SELECT version_num FROM alembic_version") == HEAD


def test_a_refused_operator_is_one_line() -> None:
    # The demo co-op (seeded by the test session) has this operator already.
    done = coop_dispatch(
        "operator", "create", "--email", "operator@demo.coop", "--password", "another-password-1"
    )
    assert_one_line_error(done)


def test_simulate_json_is_strict_with_null_for_missing_numbers(trips: Path) -> None:
    done = coop_dispatch(
        "simulate", "--trips", str(trips), *WINDOW, "--fleet", "3",
        "--policies", "greedy-nearest,batched", "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    greedy, batched = json.loads(done.stdout, parse_constant=refuse)
    # A greedy policy solves no batch: its solve times do not exist.
    assert greedy["policy"] == "greedy-nearest"
    assert greedy["solve_p50_ms"] is None and greedy["solve_max_ms"] is None
    assert isinstance(batched["solve_p50_ms"], float)
    assert greedy["requests"] == batched["requests"] == 12
