"""schemathesis against our own /openapi.json, through a real API process, as every role.

Checks everything schemathesis has (server errors, status codes, content types, headers and
bodies against the schema, negative data rejected, auth not ignored, use after free, ...) except:
- positive_data_acceptance: schema-valid requests that business rules refuse with a clear 422
  (a pickup outside the service area, a voting window outside the bylaws, a reserved email
  domain such as .test) are correct answers, not bugs;
- allow_header_conformance: Starlette's 405 lists the methods of the first route matching the
  path only, not all of them.
The default run is small (make test); `-m long` runs several thousand cases per role. A run is
judged by what it found, not by its exit code: a schemathesis crash is reported with its seed and
its phases run again (`fuzz_verdict.py`); only the API's own failures read as server defects.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import PASSWORD, bearer, make_operator
from tests.e2e.harness import Stack, running_stack
from tests.security.fuzz_verdict import Outcome, Verdict, read_verdict, settle

pytestmark = pytest.mark.e2e

EXCLUDED_CHECKS = "positive_data_acceptance,allow_header_conformance"
SCHEMATHESIS = Path(sys.executable).with_name("st")
DEFAULT_EXAMPLES = int(os.environ.get("COOP_FUZZ_EXAMPLES", "3"))
LONG_EXAMPLES = int(os.environ.get("COOP_FUZZ_LONG_EXAMPLES", "150"))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(
        tmp_path_factory.mktemp("fuzz"), login_attempts_per_minute="1000000"
    ) as running:
        running.start_api("api")
        yield running


@pytest.fixture(scope="module")
async def tokens(base: str, app: Any) -> AsyncIterator[dict[str, str]]:
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:

        async def signed_up(role: str) -> tuple[str, str]:
            email = f"fuzz-{role}-{uuid.uuid4().hex[:8]}@example.com"
            body = {"email": email, "password": PASSWORD, "name": f"Fuzz {role}", "role": role}
            created = await http.post("/v1/auth/register", json=body)
            assert created.status_code == 202, created.text
            token = await login(email)
            me = await http.get("/v1/auth/me", headers=bearer(token))
            return me.json()["id"], token

        async def login(email: str) -> str:
            token = await http.post(
                "/v1/auth/token", data={"username": email, "password": PASSWORD}
            )
            assert token.status_code == 200, token.text
            return str(token.json()["access_token"])

        operator = (await make_operator(http, app)).token
        _, rider = await signed_up("rider")
        _, driver = await signed_up("driver")
        member_id, member = await signed_up("driver")
        admitted = await http.post(
            "/v1/governance/members",
            json={"user_id": member_id},
            headers=bearer(operator),
        )
        assert admitted.status_code == 201, admitted.text
        yield {"rider": rider, "driver": driver, "member": member, "operator": operator}


@pytest.fixture(scope="module", autouse=True)
def schemathesis_installed() -> None:
    if not SCHEMATHESIS.exists():
        pytest.fail(f"{SCHEMATHESIS} is missing: pip install -e '.[dev]' (schemathesis)")


def run_schemathesis(
    base: str,
    token: str,
    max_examples: int,
    reports: Path,
    seed: int | None,
    phases: list[str],
    workers: int = 4,
) -> tuple[Verdict, str]:
    """One run, read as its verdict (`fuzz_verdict.py`): its exit code cannot tell a server
    defect from a schemathesis crash."""
    reports.mkdir(parents=True, exist_ok=True)
    command = [
        str(SCHEMATHESIS),
        "run",
        f"{base}/openapi.json",
        "--header",
        f"Authorization: Bearer {token}",
        "--checks",
        "all",
        "--exclude-checks",
        EXCLUDED_CHECKS,
        "--phases",
        ",".join(phases),
        "--max-examples",
        str(max_examples),
        "--generation-database",
        "none",
        "--request-timeout",
        "10",
        "--workers",
        str(workers),
        "--no-color",
        "--report",
        "junit,json",
        "--report-junit-path",
        str(reports / "junit.xml"),
        "--report-json-path",
        str(reports / "run.json"),
    ]
    if seed is not None:
        command += ["--seed", str(seed)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800, check=False)
    output = done.stdout + done.stderr
    return read_verdict(reports / "run.json", output, done.returncode, phases), output


def fuzz_role(
    base: str, token: str, reports: Path, max_examples: int, seed: int | None, phases: list[str]
) -> tuple[Outcome, str]:
    first, output = run_schemathesis(base, token, max_examples, reports / "run", seed, phases)
    outputs = [output]

    def rerun(phases: list[str], seed: int | None) -> Verdict:
        # One worker: the crash met so far is a race between schemathesis's threads.
        verdict, output = run_schemathesis(
            base, token, max_examples, reports / "rerun", seed, phases, workers=1
        )
        outputs.append(output)
        return verdict

    outcome = settle(first, rerun)
    return outcome, outputs[-1]


async def fuzz_every_role(
    base: str,
    tokens: dict[str, str],
    tmp_path: Path,
    max_examples: int,
    seed: int | None,
    phases: list[str],
) -> dict[str, int]:
    generated: dict[str, int] = {}
    failures = []
    for role, token in tokens.items():
        outcome, output = await asyncio.to_thread(
            fuzz_role, base, token, tmp_path / role, max_examples, seed, phases
        )
        generated[role] = outcome.generated
        for crash in outcome.crashes:
            print(f"schemathesis crashed as {role}, not a server defect ({crash})")
        if outcome.server_defects:
            failures.append(
                f"--- server defects as {role}: {outcome.server_defects} ---\n{output[-6000:]}"
            )
        elif outcome.tool_errors:
            failures.append(
                f"--- schemathesis failed as {role} twice (a tool error, not a server defect; "
                f"these phases went untested): {outcome.tool_errors} ---\n{output[-6000:]}"
            )
    assert not failures, "\n".join(failures)
    print(f"schemathesis cases per role: {generated}, total {sum(generated.values())}")
    return generated


async def test_fuzzing_finds_no_server_error_or_schema_violation(
    base: str, tokens: dict[str, str], tmp_path: Path
) -> None:
    # The coverage phase (a thousand boundary cases per role) is left to the long run.
    generated = await fuzz_every_role(
        base, tokens, tmp_path, DEFAULT_EXAMPLES, 20261127, ["examples", "fuzzing", "stateful"]
    )
    assert all(cases > 100 for cases in generated.values()), generated


@pytest.mark.long
async def test_fuzzing_long(base: str, tokens: dict[str, str], tmp_path: Path) -> None:
    generated = await fuzz_every_role(
        base,
        tokens,
        tmp_path,
        LONG_EXAMPLES,
        None,
        ["examples", "coverage", "fuzzing", "stateful"],
    )
    assert sum(generated.values()) > 5000, generated
