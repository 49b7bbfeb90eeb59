"""`make audit`: pip-audit of requirements.lock, the pinned dependencies `make install` installs
(tests/security/test_static_checks.py checks the lock covers pyproject.toml and is what runs).

pip-audit asks an advisory service about every locked version: the package index's vulnerability
data (`-s pypi`), then OSV (`-s osv`) if the first does not answer. It needs one of them reachable;
when neither answers nothing was audited and the command fails saying why, never passes. It is not
part of `make test`, whose result must not depend on a service outside the machine.

    .venv/bin/python scripts/audit.py      # exit 0: audited, no known vulnerability
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LOCK = ROOT / "requirements.lock"
SERVICES = ("pypi", "osv")  # tried in this order until one answers
SOCKET_TIMEOUT_S = 10
TIMEOUT_S = 90  # per service

# Advisories we accept, each with the reason; pip-audit is told to ignore exactly these.
ACCEPTED_VULNERABILITIES: dict[str, str] = {}


def pip_audit(service: str) -> tuple[dict[str, list[str]] | None, str]:
    """The vulnerabilities found per dependency with one advisory service, and a summary; or
    None and why nothing was audited."""
    command = [
        str(BIN / "pip-audit"),
        *("-r", str(LOCK), "--require-hashes", "--disable-pip"),
        *("-s", service, "--timeout", str(SOCKET_TIMEOUT_S)),
        *("--progress-spinner", "off", "-f", "json", "--desc", "off"),
    ]
    for vulnerability in ACCEPTED_VULNERABILITIES:
        command += ["--ignore-vuln", vulnerability]
    try:
        done = subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        return None, f"no answer within {TIMEOUT_S} s"
    try:
        dependencies = json.loads(done.stdout)["dependencies"]
    except (ValueError, KeyError):
        lines = done.stderr.strip().splitlines() or [f"exit status {done.returncode}, no report"]
        return None, lines[-1][:400]
    audited = [d for d in dependencies if "skip_reason" not in d]
    if not audited:
        reason = dependencies[0]["skip_reason"] if dependencies else "an empty report"
        return None, f"none of {len(dependencies)} dependencies audited, e.g. {reason!r}"
    vulnerable = {f"{d['name']} {d['version']}": [v["id"] for v in d["vulns"]] for d in audited}
    summary = f"{len(audited)} of {len(dependencies)} dependencies audited"
    return {name: ids for name, ids in vulnerable.items() if ids}, summary


def main() -> int:
    problems = []
    for service in SERVICES:
        vulnerable, summary = pip_audit(service)
        if vulnerable is None:
            problems.append(f"-s {service}: {summary}")
            continue
        accepted = len(ACCEPTED_VULNERABILITIES)
        if vulnerable:
            for name, ids in sorted(vulnerable.items()):
                print(f"{name}: {', '.join(ids)}")
            print(f"pip-audit -s {service}: {summary}, {len(vulnerable)} vulnerable")
            return 1
        print(f"pip-audit -s {service}: {summary}, 0 vulnerable ({accepted} accepted advisories)")
        return 0
    print(f"pip-audit audited nothing, no advisory service answers: {'; '.join(problems)}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
