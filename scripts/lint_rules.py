"""House rules that ruff and mypy cannot see (docs: ../shared/STYLE.md), checked on the syntax tree.

1. Queries live in `repository.py`: outside it (and outside migrations) no file of a shipped
   package builds SQL (`select`, `update`, `insert`, `delete`, `text` from SQLAlchemy) or runs
   statements on a session or connection (`execute`, `scalar`, `scalars`, `stream`, asyncpg's
   `fetch*` and `copy_*`).
2. Imports point down the layers: core <- domains <- APIs <- assembly. `dispatch/core/` imports
   nothing of ours above it; `dispatch/matching/` (the pure engine) imports nothing of ours but
   itself, and no Redis, database or web library; the other `dispatch` domains never import the
   APIs (`governance`, `rider_api`, `driver_api`), the assembly modules or `loadtests`.

Files that still break a rule are listed below with the work that removes them: the lists only
shrink, and both are empty now. The check fails on a new offender and on a listed file that no
longer offends, so a fix also deletes its line.

    .venv/bin/python scripts/lint_rules.py        # `make lint` runs it; exit 1 names each breach
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

PACKAGES = ("dispatch", "rider_api", "driver_api", "governance", "loadtests")
OURS = frozenset(PACKAGES)

QUERY_BUILDERS = frozenset({"select", "update", "insert", "delete", "text"})
# Methods that send a statement, on a receiver named like a session or a database connection
# (Redis pipelines also `execute`; they are named `pipe`).
RUN_METHODS = frozenset(
    {
        "execute",
        "executemany",
        "scalar",
        "scalars",
        "stream",
        "stream_scalars",
        "exec_driver_sql",
        "fetch",
        "fetchrow",
        "fetchval",
        "copy_records_to_table",
        "copy_to_table",
    }
)
SESSION_NAMES = ("session", "connection", "conn")

# Modules that wire the process together; they may import anything.
ASSEMBLY = frozenset(
    {
        "dispatch.app",
        "dispatch.cli",
        "dispatch.entrypoints",
        "dispatch.migrate",
        "dispatch.models",
        "dispatch.demo",
        "dispatch.migrations",
    }
)
APIS = frozenset({"rider_api", "driver_api", "governance"})
ENGINE = "dispatch.matching"
# Third-party libraries the pure engine must not touch: it sees arrays, not stores or requests.
ENGINE_FORBIDDEN = frozenset({"redis", "sqlalchemy", "asyncpg", "geoalchemy2", "fastapi"})

# --- the shrinking baselines: file -> the work that removes it (empty: keep them so) ---------
QUERY_BASELINE: dict[str, str] = {}
IMPORT_BASELINE: dict[str, str] = {}


@dataclass(frozen=True)
class Breach:
    path: str
    line: int
    rule: str
    what: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: [{self.rule}] {self.what}"


def module_name(relative: Path) -> str:
    parts = list(relative.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer(module: str) -> str:
    if module == "dispatch.core" or module.startswith("dispatch.core."):
        return "core"
    if module == ENGINE or module.startswith(ENGINE + "."):
        return "engine"
    if any(module == a or module.startswith(a + ".") for a in ASSEMBLY) or module == "dispatch":
        return "assembly"
    top = module.split(".")[0]
    if top in APIS:
        return "api"
    if top == "loadtests":
        return "tools"
    return "domain"


# What each layer may import of ours, by the imported module's layer.
ALLOWED: Mapping[str, frozenset[str]] = {
    "core": frozenset({"core"}),
    "engine": frozenset({"engine"}),
    "domain": frozenset({"core", "engine", "domain"}),
    "api": frozenset({"core", "engine", "domain", "api"}),
    "tools": frozenset({"core", "engine", "domain", "api", "tools", "assembly"}),
    "assembly": frozenset({"core", "engine", "domain", "api", "tools", "assembly"}),
}


def imported_modules(tree: ast.AST, module: str, is_package: bool) -> Iterator[tuple[int, str]]:
    """(line, full name) of everything imported; `from a.b import c` yields `a.b.c`, which
    `layer` places like the module a.b (or the submodule a.b.c)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            for alias in node.names:
                yield node.lineno, f"{target}.{alias.name}"


def import_breaches(relative: str, tree: ast.AST, module: str, is_package: bool) -> list[Breach]:
    mine = layer(module)
    found: dict[tuple[int, str], Breach] = {}  # one per line and imported layer
    for line, target in imported_modules(tree, module, is_package):
        top = target.split(".")[0]
        if mine == "engine" and top in ENGINE_FORBIDDEN:
            what = f"the pure engine imports {target.rsplit('.', 1)[0]}"
            found.setdefault((line, top), Breach(relative, line, "imports", what))
        elif top in OURS and (theirs := layer(target)) not in ALLOWED[mine]:
            what = f"{mine} module {module} imports {theirs} {target}"
            found.setdefault((line, theirs), Breach(relative, line, "imports", what))
    return list(found.values())


def receiver_name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def query_breaches(relative: str, tree: ast.AST) -> list[Breach]:
    # Schema files use text() for index predicates and server defaults, which are not queries.
    schema = relative.endswith("models.py")
    builders: set[str] = set()  # local names of SQLAlchemy's statement builders
    modules: set[str] = set()  # local names of `import sqlalchemy [as sa]`
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlalchemy"):
            builders |= {
                a.asname or a.name
                for a in node.names
                if a.name in QUERY_BUILDERS and not (schema and a.name == "text")
            }
        elif isinstance(node, ast.Import):
            modules |= {a.asname or a.name for a in node.names if a.name.startswith("sqlalchemy")}
    found: list[Breach] = []
    for node in ast.walk(tree):
        # `await session.get(Model, key)` is SQLAlchemy's primary-key read (an HTTP session's
        # `get` is not awaited).
        if isinstance(node, ast.Await) and isinstance(node.value, ast.Call):
            function = node.value.func
            if (
                isinstance(function, ast.Attribute)
                and function.attr == "get"
                and receiver_name(function.value).lower().endswith("session")
            ):
                owner = receiver_name(function.value)
                found.append(Breach(relative, node.lineno, "queries", f"{owner}.get(...)"))
        if not isinstance(node, ast.Call):
            continue
        function = node.func
        if isinstance(function, ast.Name) and function.id in builders:
            found.append(Breach(relative, node.lineno, "queries", f"{function.id}(...)"))
        elif isinstance(function, ast.Attribute):
            owner = receiver_name(function.value)
            builds = function.attr in QUERY_BUILDERS and owner in modules
            runs = function.attr in RUN_METHODS and owner.lower().endswith(SESSION_NAMES)
            if builds or runs:
                what = f"{owner}.{function.attr}(...)"
                found.append(Breach(relative, node.lineno, "queries", what))
    return found


def shipped_files(root: Path) -> Iterator[Path]:
    for package in PACKAGES:
        if (root / package).is_dir():
            yield from sorted((root / package).rglob("*.py"))


def check(
    root: Path,
    query_baseline: Mapping[str, str] = QUERY_BASELINE,
    import_baseline: Mapping[str, str] = IMPORT_BASELINE,
) -> list[str]:
    """Every breach not in a baseline, and every baseline entry that no longer breaks its rule."""
    problems: list[str] = []
    offending: dict[str, set[str]] = {"queries": set(), "imports": set()}
    baselines = {"queries": query_baseline, "imports": import_baseline}
    for path in shipped_files(root):
        relative = path.relative_to(root)
        name = relative.as_posix()
        if "migrations" in relative.parts:
            continue
        tree = ast.parse(path.read_text(), filename=name)
        module = module_name(relative)
        breaches = import_breaches(name, tree, module, relative.name == "__init__.py")
        if relative.name != "repository.py":
            breaches += query_breaches(name, tree)
        for breach in sorted(breaches, key=lambda b: b.line):
            offending[breach.rule].add(name)
            if name not in baselines[breach.rule]:
                problems.append(str(breach))
    for rule, baseline in baselines.items():
        for name in sorted(set(baseline) - offending[rule]):
            problems.append(
                f"{name}: [{rule}] listed in scripts/lint_rules.py but no longer offends: "
                "delete its line from the baseline"
            )
    return problems


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parents[1]
    problems = check(root)
    for problem in problems:
        print(problem)
    if problems:
        print(f"lint_rules: {len(problems)} problem(s); the rules are in {Path(__file__).name}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
