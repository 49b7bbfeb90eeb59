"""bandit on our code (no high or medium finding) and pip-audit on the installed dependencies.

pip-audit asks an advisory service (PyPI's JSON API, or OSV). When neither answers, nothing was
audited: the test is skipped with the reason, never passed.
"""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SOURCES = ["dispatch", "rider_api", "driver_api", "governance", "loadtests"]

# Medium findings we accept, by (file, bandit test), each with the reason.
ACCEPTED_FINDINGS: dict[tuple[str, str], str] = {
    ("dispatch/simulation/bench.py", "B301"): (
        "`bench --render FILE` unpickles the raw results the bench itself wrote; a developer "
        "tool on the developer's own files, never fed untrusted input"
    ),
}

# Advisories we accept, each with the reason; pip-audit is told to ignore exactly these.
ACCEPTED_VULNERABILITIES: dict[str, str] = {}


def test_bandit_finds_no_high_or_medium_severity_issue() -> None:
    done = subprocess.run(
        [str(BIN / "bandit"), "-q", "-r", *SOURCES, "-f", "json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    report = json.loads(done.stdout)
    assert not report["errors"], report["errors"]
    serious = [
        f"{r['filename']}:{r['line_number']} {r['test_id']} {r['issue_severity']}: {r['issue_text']}"
        for r in report["results"]
        if r["issue_severity"] == "HIGH"
        or (
            r["issue_severity"] == "MEDIUM"
            and (r["filename"], r["test_id"]) not in ACCEPTED_FINDINGS
        )
    ]
    assert not serious, "\n".join(serious)
    # Low findings are reported, not gated: asserts for invariants (B101), subprocess in the CLI
    # and load tests (B404/B603/B607), `random` for simulation and jitter (B311), the
    # "password"-named strings of demo logins (B105), pickle in the bench (B403).
    low = Counter(r["test_id"] for r in report["results"] if r["issue_severity"] == "LOW")
    print(f"bandit: 0 high, accepted medium {len(ACCEPTED_FINDINGS)}, low {dict(low)}")


def advisory_service_problem() -> str | None:
    """Why PyPI's per-version JSON API (what pip-audit asks) cannot answer from here, if so."""
    url = f"https://pypi.org/pypi/fastapi/{importlib.metadata.version('fastapi')}/json"
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            json.load(answer)
    except (OSError, ValueError) as error:
        return f"{type(error).__name__}: {error}"
    return None


def test_pip_audit_finds_no_known_vulnerability() -> None:
    problem = advisory_service_problem()
    if problem is not None:
        pytest.skip(
            f"pip-audit: PyPI's advisory API is unreachable ({problem}); nothing was checked"
        )
    command = [str(BIN / "pip-audit"), "--progress-spinner", "off", "-f", "json", "--desc", "off"]
    for vulnerability in ACCEPTED_VULNERABILITIES:
        command += ["--ignore-vuln", vulnerability]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=240, check=False)
    except subprocess.TimeoutExpired:
        pytest.skip("pip-audit: the advisory service did not answer within 240 s")
    try:
        report = json.loads(done.stdout)
    except ValueError:
        pytest.skip(f"pip-audit could not run (no advisory service?): {done.stderr[-500:]}")
    dependencies = report["dependencies"]
    audited = [d for d in dependencies if "skip_reason" not in d]
    if not audited:
        pytest.skip(
            f"pip-audit: none of {len(dependencies)} dependencies could be audited "
            "(advisory service unreachable from here); nothing was checked"
        )
    vulnerable = {
        f"{d['name']} {d['version']}": [v["id"] for v in d["vulns"]] for d in audited if d["vulns"]
    }
    assert not vulnerable, vulnerable
    unaudited = len(dependencies) - len(audited)
    print(f"pip-audit: {len(audited)} dependencies audited, {unaudited} skipped, 0 vulnerable")
