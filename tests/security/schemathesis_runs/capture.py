"""Captures the schemathesis runs `tests/security/test_fuzz_verdict.py` reads: its JSON report and
its terminal output, against `target.py`, clean, with a server defect, and with the coverage phase
crashing as CPython 3.11.7's AST race (gh-106905) crashed it in the long fuzz of 2026-12-01.

    .venv/bin/python tests/security/schemathesis_runs/capture.py   # rewrites the captures

Run as `capture.py crash-at <iteration|worker> <st arguments>` it is schemathesis's CLI with the
crash planted: while the coverage phase generates cases for GET /items/{n} (schemathesis reports
a Runtime Error), or while it builds their generator (the worker thread dies, and schemathesis
reports nothing).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
PORT = 18405
CRASH = "AST constructor recursion depth mismatch (before=58, after=57)"
ST_ARGS = [
    "run",
    f"http://127.0.0.1:{PORT}/openapi.json",
    "--checks",
    "all",
    "--exclude-checks",
    "positive_data_acceptance,allow_header_conformance,status_code_conformance",
    "--max-examples",
    "10",
    "--generation-database",
    "none",
    "--workers",
    "4",
    "--no-color",
    "--seed",
    "20261201",
    "--phases",
    "examples,coverage,fuzzing",
]
# name: (the target has a defect, where the crash is planted)
RUNS = {
    "clean": (False, None),
    "crash": (False, "iteration"),
    "worker_crash": (False, "worker"),
    "defect": (True, None),
    "crash_and_defect": (True, "iteration"),
}


def crashing_cli(where: str, argv: list[str]) -> int:
    import schemathesis.engine.run.unit as unit
    import schemathesis.engine.run.unit._direct_executor as direct
    from schemathesis.cli import schemathesis as cli

    build, collect = unit._build_coverage_generator, direct._collect_within_budget

    def crashing_build(operation: Any, *args: Any, **kwargs: Any) -> Any:
        if operation.path == "/items/{n}":
            raise SystemError(CRASH)
        return build(operation, *args, **kwargs)

    def crashing_collect(generator: Any, ctx: Any) -> Any:
        cases = collect(generator, ctx)
        if generator.operation.path == "/items/{n}" and "Coverage" in type(generator).__name__:
            raise SystemError(CRASH)
        return cases

    if where == "worker":
        unit._build_coverage_generator = crashing_build  # type: ignore[assignment]
    else:
        direct._collect_within_budget = crashing_collect
    sys.argv = ["st", *argv]
    return int(cli() or 0)


def capture() -> None:
    python = str(ROOT / ".venv" / "bin" / "python")
    for name, (defect, crash_at) in RUNS.items():
        server = subprocess.Popen(
            [python, "-m", "uvicorn", "target:app", "--port", str(PORT), "--log-level", "warning"],
            cwd=HERE,
            env={"COOP_TARGET_DEFECT": "1" if defect else "0", "PATH": "/usr/bin:/bin"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(100):
                try:
                    httpx.get(f"http://127.0.0.1:{PORT}/openapi.json")
                    break
                except httpx.HTTPError:
                    time.sleep(0.1)
            report = HERE / f"{name}.json"
            command = [python, "-m", "schemathesis.cli"] if crash_at is None else [
                python, __file__, "crash-at", crash_at
            ]  # fmt: skip
            done = subprocess.run(
                [*command, *ST_ARGS, "--report", "json", "--report-json-path", str(report)],
                capture_output=True,
                text=True,
                check=False,
            )
            (HERE / f"{name}.txt").write_text(done.stdout + done.stderr)
            print(f"{name}: exit {done.returncode}")
        finally:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    if sys.argv[1:2] == ["crash-at"]:
        sys.exit(crashing_cli(sys.argv[2], sys.argv[3:]))
    capture()
