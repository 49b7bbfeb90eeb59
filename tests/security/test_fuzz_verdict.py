"""The fuzz test tells a schemathesis crash from a server defect: read on captured runs
(`schemathesis_runs/capture.py`: a tiny API, clean or with a 500, and the coverage phase crashed as
CPython 3.11.7's AST race crashed it in the long fuzz of 2026-12-01)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.security.fuzz_verdict import Verdict, read_verdict, settle

RUNS = Path(__file__).resolve().parent / "schemathesis_runs"
PHASES = ["examples", "coverage", "fuzzing"]
SEED = 20261201


def captured(name: str) -> Verdict:
    report = RUNS / f"{name}.json"
    exit_code = json.loads(report.read_text())["exit_code"]
    return read_verdict(report, (RUNS / f"{name}.txt").read_text(), exit_code, PHASES)


def test_a_clean_run_is_clean() -> None:
    verdict = captured("clean")
    assert verdict.clean and verdict.seed == SEED and verdict.generated == 57


def test_a_crash_after_every_case_passed_is_a_tool_error_to_rerun() -> None:
    """What failed the long fuzz: exit 1, every case passed, a Runtime Error in coverage."""
    verdict = captured("crash")
    assert verdict.server_defects == []
    assert verdict.tool_errors == ["Runtime Error ×1"]
    assert verdict.rerun_phases == ["coverage"] and verdict.seed == SEED


def test_a_dead_worker_thread_is_a_tool_error_although_the_run_exits_0() -> None:
    """Its operations go untested and nothing in the report says so: only the output does."""
    verdict = captured("worker_crash")
    assert json.loads((RUNS / "worker_crash.json").read_text())["exit_code"] == 0
    assert verdict.server_defects == []
    assert verdict.tool_errors == [
        "worker thread schemathesis_unit_tests_0 died; its operations went untested"
    ]
    assert verdict.rerun_phases == PHASES


def test_a_server_error_is_a_server_defect() -> None:
    verdict = captured("defect")
    assert verdict.server_defects == ["ST101 Server error ×1: POST /boom"]
    assert verdict.tool_errors == [] and verdict.rerun_phases == []


def test_a_crash_does_not_hide_a_server_defect() -> None:
    verdict = captured("crash_and_defect")
    assert verdict.server_defects == ["ST101 Server error ×1: POST /boom"]
    assert verdict.tool_errors == ["Runtime Error ×1"]
    assert verdict.rerun_phases == [], "the defect fails the run; no rerun can change that"


def test_requests_the_api_never_answered_are_server_defects(tmp_path: Path) -> None:
    document = json.loads((RUNS / "crash.json").read_text())
    document["errors"] = [{"title": "Network Error", "count": 3}]
    report = tmp_path / "network.json"
    report.write_text(json.dumps(document))
    verdict = read_verdict(report, "", 1, PHASES)
    assert verdict.server_defects == ["Network Error ×3"] and verdict.tool_errors == []


def test_a_run_that_left_no_report_is_a_tool_error(tmp_path: Path) -> None:
    output = (RUNS / "crash.txt").read_text()
    verdict = read_verdict(tmp_path / "missing.json", output, 1, PHASES)
    assert verdict.tool_errors == ["schemathesis exited 1 without its report"]
    assert verdict.rerun_phases == PHASES and verdict.seed == SEED


class Rerun:
    def __init__(self, verdict: Verdict | None) -> None:
        self.verdict = verdict
        self.calls: list[tuple[list[str], int | None]] = []

    def __call__(self, phases: list[str], seed: int | None) -> Verdict:
        self.calls.append((phases, seed))
        assert self.verdict is not None, "no rerun expected"
        return self.verdict


def test_a_crash_is_rerun_with_its_seed_and_passes_when_the_rerun_is_clean() -> None:
    rerun = Rerun(captured("clean"))
    outcome = settle(captured("crash"), rerun)
    assert rerun.calls == [(["coverage"], SEED)]
    assert outcome.server_defects == [] and outcome.tool_errors == []
    assert outcome.crashes == [f"seed {SEED}: Runtime Error ×1; re-ran coverage"]
    assert outcome.generated == 43 + 57


def test_a_crash_that_comes_back_is_reported_as_the_tool_s_not_the_server_s() -> None:
    outcome = settle(captured("crash"), Rerun(captured("crash")))
    assert outcome.server_defects == [] and outcome.tool_errors == ["Runtime Error ×1"]


def test_a_defect_found_on_the_rerun_fails_as_a_defect() -> None:
    outcome = settle(captured("worker_crash"), Rerun(captured("defect")))
    assert outcome.server_defects == ["ST101 Server error ×1: POST /boom"]


@pytest.mark.parametrize("name", ["defect", "crash_and_defect", "clean"])
def test_defects_and_clean_runs_are_never_rerun(name: str) -> None:
    first = captured(name)
    outcome = settle(first, Rerun(None))
    assert outcome.server_defects == first.server_defects and outcome.crashes == []
