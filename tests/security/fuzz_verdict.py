"""What a schemathesis run says about the API, told apart from what it says about schemathesis.

Its exit code cannot tell them apart: 1 means failed checks or an error in the tool, and a worker
thread that dies takes its operations with it and still exits 0. So the run is read from its JSON
report (`--report json`) and its output:
- server defects: failed checks (server errors, schema violations, ...) and requests the API never
  answered (network errors, timeouts, an API that went away);
- tool errors: schemathesis, Hypothesis or the interpreter under them failed (a Runtime Error, a
  dead worker thread, no report at all). They say nothing about the API, but the phases they hit
  were not fully run, so those phases run again with the run's seed.

The long fuzz of 2026-12-01 was a tool error: `SystemError: AST constructor recursion depth
mismatch` in the coverage phase, CPython 3.11.7's race between threads building ASTs (gh-106905,
fixed in 3.11.8), met when Hypothesis parses a module to describe a lambda in two of
schemathesis's worker threads at once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# Error titles of schemathesis 4 (engine/errors.py) that mean the API did not answer.
SERVER_SIDE_ERRORS = frozenset(
    {"Network Error", "Unhealthy API", "Unresponsive Operation", "Server Unavailable"}
)
DEAD_WORKER = re.compile(r"^Exception in thread (schemathesis\S*):", re.MULTILINE)
SEED = re.compile(r"^Seed: (\d+)", re.MULTILINE)


@dataclass(frozen=True)
class Verdict:
    seed: int | None
    generated: int
    server_defects: list[str] = field(default_factory=list)
    tool_errors: list[str] = field(default_factory=list)
    # Phases to run again after a tool error (none when the API is at fault: that fails anyway).
    rerun_phases: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.server_defects and not self.tool_errors


def read_verdict(report: Path, output: str, exit_code: int, phases: list[str]) -> Verdict:
    """`phases` are the phases the run was asked for, in order."""
    seed_line = SEED.search(output)
    seed = int(seed_line.group(1)) if seed_line else None
    try:
        document = json.loads(report.read_text())
    except (OSError, ValueError):
        return Verdict(
            seed=seed,
            generated=0,
            tool_errors=[f"schemathesis exited {exit_code} without its report"],
            rerun_phases=list(phases),
        )
    server_defects = [
        f"{failure['code']} {failure['title']} ×{failure['count']}: "
        + ", ".join(failure["operations"])
        for failure in document["failures"]
    ]
    tool_errors = []
    for error in document["errors"]:
        described = f"{error['title']} ×{error['count']}"
        (server_defects if error["title"] in SERVER_SIDE_ERRORS else tool_errors).append(described)
    statuses = {name: phase["status"] for name, phase in (document["phases"] or {}).items()}
    rerun = [name for name in phases if statuses.get(name) == "error"]
    for thread in DEAD_WORKER.findall(output):
        tool_errors.append(f"worker thread {thread} died; its operations went untested")
        rerun = list(phases)  # the report does not say which phase lost them
    if not document["complete"]:
        tool_errors.append(f"the run stopped before the end ({document['stop_reason']})")
        rerun = list(phases)
    if exit_code != 0 and not server_defects and not tool_errors:
        tool_errors.append(f"exit {exit_code} with no failure or error reported")
    if tool_errors and not rerun:
        rerun = list(phases)
    return Verdict(
        seed=document["seed"] if document["seed"] is not None else seed,
        generated=document["test_cases"]["generated"],
        server_defects=server_defects,
        tool_errors=tool_errors,
        rerun_phases=[] if server_defects else rerun,
    )


@dataclass(frozen=True)
class Outcome:
    generated: int
    server_defects: list[str]
    tool_errors: list[str]  # still there after the rerun: those phases stay untested
    crashes: list[str]  # tool errors the rerun made good, each with its seed


def settle(first: Verdict, rerun: Callable[[list[str], int | None], Verdict]) -> Outcome:
    """A server defect stands as found; a tool error runs its phases again with the same seed
    (`rerun(phases, seed)`), and what that run finds is the answer."""
    if first.server_defects or not first.tool_errors:
        return Outcome(first.generated, first.server_defects, first.tool_errors, [])
    crash = (
        f"seed {first.seed}: {'; '.join(first.tool_errors)}; re-ran {', '.join(first.rerun_phases)}"
    )
    second = rerun(first.rerun_phases, first.seed)
    return Outcome(
        first.generated + second.generated, second.server_defects, second.tool_errors, [crash]
    )
