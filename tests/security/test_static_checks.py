"""bandit on our code (no high or medium finding), and the pinned dependencies are what runs.

The dependencies are those of requirements.lock (`make lock` writes it from pyproject.toml, with
hashes; scripts/install.sh installs from it); the tests check that it covers pyproject.toml and is
what is installed, so `make audit` (pip-audit of the lock, which needs an advisory service
reachable and so is not part of `make test`) audits what runs.
"""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
import tomllib
from collections import Counter
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SOURCES = ["dispatch", "rider_api", "driver_api", "governance", "loadtests"]
LOCK = ROOT / "requirements.lock"

# A medium finding we accept carries `# nosec <test id>` on its line with the reason above it,
# which bandit honours here and in `make lint` (`bandit -ll`).


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
        if r["issue_severity"] in ("HIGH", "MEDIUM")
    ]
    assert not serious, "\n".join(serious)
    # Low findings are reported, not gated: asserts for invariants (B101), subprocess in the CLI
    # and load tests (B404/B603/B607), `random` for simulation and jitter (B311), the
    # "password"-named strings of demo logins (B105), pickle in the bench (B403).
    low = Counter(r["test_id"] for r in report["results"] if r["issue_severity"] == "LOW")
    print(f"bandit: 0 high, 0 medium, low {dict(low)}")


def locked_requirements() -> dict[str, tuple[Requirement, int]]:
    """The lock's requirements by package, with their markers and how many hashes each has."""
    locked: dict[str, tuple[Requirement, int]] = {}
    name = ""
    for line in LOCK.read_text().splitlines():
        if line.startswith("    --hash=sha256:"):
            requirement, hashes = locked[name]
            locked[name] = (requirement, hashes + 1)
        elif line and not line[0].isspace() and not line.startswith("#"):
            requirement = Requirement(line.removesuffix("\\").strip())
            name = canonicalize_name(requirement.name)
            locked[name] = (requirement, 0)
    return locked


def pinned_version(requirement: Requirement) -> str | None:
    specifiers = list(requirement.specifier)
    if len(specifiers) == 1 and specifiers[0].operator == "==":
        return specifiers[0].version
    return None


def test_lock_pins_and_hashes_everything_pyproject_asks_for() -> None:
    locked = locked_requirements()
    loose = [str(r) for r, hashes in locked.values() if pinned_version(r) is None or not hashes]
    assert not loose, f"not pinned with == and hashes, run `make lock`: {loose}"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = project["dependencies"] + project["optional-dependencies"]["dev"]
    stale = []
    for requirement in map(Requirement, declared):
        name = canonicalize_name(requirement.name)
        version = pinned_version(locked[name][0]) if name in locked else None
        if version is None or not requirement.specifier.contains(version, prereleases=True):
            stale.append(str(requirement))
    assert not stale, (
        f"requirements.lock lacks what pyproject.toml asks for, run `make lock`: {stale}"
    )


def test_installed_dependencies_are_the_locked_ones() -> None:
    """What `make audit` audits (the lock) is what the tests run on."""
    drift = []
    for requirement, _ in locked_requirements().values():
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        try:
            installed = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            installed = "none"
        if installed != pinned_version(requirement):
            drift.append(
                f"{requirement.name}: locked {requirement.specifier}, installed {installed}"
            )
    assert not drift, f"the environment is not the lock's, run `make install`: {drift}"
