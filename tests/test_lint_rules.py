"""scripts/lint_rules.py on small trees: it finds queries outside repositories, imports that point
up the layers, and baseline entries that no longer offend; a clean tree passes."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "lint_rules.py"


@pytest.fixture(scope="module")
def lint_rules() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lint_rules", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["lint_rules"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


CLEAN = {
    "dispatch/__init__.py": "",
    "dispatch/core/settings.py": "import os\nREGION = os.environ.get('R')\n",
    "dispatch/rides/repository.py": (
        "from sqlalchemy import select, update\n"
        "async def one(session, ride_id):\n"
        "    return await session.scalar(select(1))\n"
    ),
    "dispatch/rides/models.py": (
        "from sqlalchemy import Index, text\nIndex('i', 'status', postgresql_where=text('x'))\n"
    ),
    "dispatch/rides/service.py": (
        "from dispatch.core.settings import REGION\n"
        "from dispatch.rides import repository\n"
        "async def start(session, pipe, values):\n"
        "    values.update(region=REGION)\n"  # dict.update is no query
        "    await pipe.execute()\n"  # a Redis pipeline is no session
        "    return await repository.one(session, 1)\n"
    ),
    "dispatch/matching/batch.py": "import numpy as np\nfrom dispatch.matching import solver\n",
    "dispatch/matching/solver.py": "",
    "dispatch/migrations/versions/0001_x.py": "from sqlalchemy import text\ntext('DROP')\n",
    "dispatch/app.py": "from rider_api.endpoints import router\nfrom governance import hooks\n",
    "rider_api/endpoints.py": "from dispatch.rides import service\nrouter = None\n",
    "governance/hooks.py": "from dispatch.rides.service import start\n",
    "loadtests/report.py": (
        "import requests\ndef fetch():\n    session = requests.Session()\n"
        "    return session.get('http://x')\n"
    ),
}

OFFENDERS = {
    "dispatch/rides/messages.py": (
        "import sqlalchemy as sa\nfrom sqlalchemy import update as sql_update\n"
        "async def rewrite(session):\n"
        "    await session.execute(sql_update(1))\n"
        "    return sa.select(1)\n"
    ),
    "dispatch/metrics.py": (
        "from sqlalchemy import text\nCOUNTS = text('SELECT 1')\n"
        "async def scrape(connection):\n    return await connection.scalar(COUNTS)\n"
    ),
    "governance/service.py": "async def enact(session, Policy):\n    return await session.get(Policy, 1)\n",
    "loadtests/seeding.py": "async def seed(connection):\n    await connection.fetchval('SELECT 1')\n",
    "dispatch/core/errors.py": "from dispatch.rides.models import Ride\n",
    "dispatch/matching/snapshot.py": "import redis.asyncio as aioredis\nfrom dispatch.core import geo\n",
    "dispatch/dispatcher/worker.py": "from governance.tasks import tick\n",
    "dispatch/realtime/connection.py": "from . import hub\nfrom ..app import create_app\n",
    "rider_api/endpoints.py": "from dispatch.cli import main\n",
}


def test_a_clean_tree_passes(lint_rules: ModuleType, tmp_path: Path) -> None:
    assert lint_rules.check(write(tmp_path, CLEAN), {}, {}) == []


def test_every_offender_is_named(lint_rules: ModuleType, tmp_path: Path) -> None:
    problems = lint_rules.check(write(tmp_path, {**CLEAN, **OFFENDERS}), {}, {})
    text = "\n".join(problems)
    for found in (
        "dispatch/rides/messages.py:4: [queries] session.execute(...)",
        "dispatch/rides/messages.py:4: [queries] sql_update(...)",
        "dispatch/rides/messages.py:5: [queries] sa.select(...)",
        "dispatch/metrics.py:2: [queries] text(...)",
        "dispatch/metrics.py:4: [queries] connection.scalar(...)",
        "governance/service.py:2: [queries] session.get(...)",
        "loadtests/seeding.py:2: [queries] connection.fetchval(...)",
        "dispatch/core/errors.py:1: [imports] core module dispatch.core.errors imports domain",
        "dispatch/matching/snapshot.py:1: [imports] the pure engine imports redis",
        "dispatch/matching/snapshot.py:2: [imports] engine module dispatch.matching.snapshot "
        "imports core dispatch.core.geo",
        "dispatch/dispatcher/worker.py:1: [imports] domain module dispatch.dispatcher.worker "
        "imports api governance.tasks.tick",
        "dispatch/realtime/connection.py:2: [imports] domain module dispatch.realtime.connection "
        "imports assembly dispatch.app.create_app",
        "rider_api/endpoints.py:1: [imports] api module rider_api.endpoints imports assembly",
    ):
        assert found in text
    assert len(problems) == 13, text  # `from . import hub` is the package's own: no breach


def test_baselines_hold_offenders_and_must_shrink(lint_rules: ModuleType, tmp_path: Path) -> None:
    root = write(tmp_path, {**CLEAN, "dispatch/metrics.py": OFFENDERS["dispatch/metrics.py"]})
    assert lint_rules.check(root, {"dispatch/metrics.py": "11.1"}, {}) == []
    # A listed file that was fixed (or one that never offended) fails until its line goes.
    problems = lint_rules.check(
        root,
        {"dispatch/metrics.py": "11.1", "dispatch/rides/service.py": "11.1"},
        {"dispatch/metrics.py": "11.2"},
    )
    assert problems == [
        "dispatch/rides/service.py: [queries] listed in scripts/lint_rules.py but no longer "
        "offends: delete its line from the baseline",
        "dispatch/metrics.py: [imports] listed in scripts/lint_rules.py but no longer offends: "
        "delete its line from the baseline",
    ]


def test_the_command_exits_1_and_names_the_breach(lint_rules: ModuleType, tmp_path: Path) -> None:
    # The real baselines name files this small tree lacks: they are reported too.
    root = write(
        tmp_path, {**CLEAN, "dispatch/core/errors.py": OFFENDERS["dispatch/core/errors.py"]}
    )
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(root)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 1
    assert "dispatch/core/errors.py:1: [imports] core module" in done.stdout
    baselined = bool(lint_rules.QUERY_BASELINE or lint_rules.IMPORT_BASELINE)
    assert ("no longer offends" in done.stdout) == baselined
