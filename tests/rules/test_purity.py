"""SPEC §6 / STYLE 1: `rules/` is pure: no I/O, no streaming framework, no clock reads."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import rules

RULES_DIR = Path(rules.__file__).parent
RULE_FILES = sorted(RULES_DIR.glob("*.py"))

FORBIDDEN_MODULES = {
    "aiokafka",
    "asyncio",
    "faust",
    "http",
    "kafka",
    "logging",
    "multiprocessing",
    "os",
    "prometheus_client",
    "random",
    "requests",
    "secrets",
    "selectors",
    "shutil",
    "socket",
    "ssl",
    "stream_app",
    "subprocess",
    "sys",
    "tempfile",
    "threading",
    "time",
    "urllib",
    "uuid",
}
"""Top-level modules whose import would mean I/O, a framework, randomness or a clock."""

CLOCK_READS = {"now", "utcnow", "today", "time", "time_ns", "monotonic", "perf_counter"}
"""Attribute calls that read a clock (`datetime.now()`, `date.today()`, `time.time()` …)."""

ALLOWED_FROM_DATETIME = {"timedelta", "timezone", "UTC"}
"""`datetime` is allowed for durations only: no `datetime`/`date` class to call `.now()` on."""


def test_purity_the_rules_package_has_modules_to_check():
    assert {p.name for p in RULE_FILES} >= {"engine.py", "pool.py", "ledger.py"}


def imports_of(tree: ast.AST) -> list[tuple[str, list[str]]]:
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, [alias.name for alias in node.names]))
    return found


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_purity_rules_module_imports_no_io_framework_or_clock(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))

    for module, names in imports_of(tree):
        top = module.split(".")[0]
        assert top not in FORBIDDEN_MODULES, f"{path.name} imports {module}"
        if top == "datetime":
            assert module == "datetime" and names, f"{path.name}: use `from datetime import …`"
            assert set(names) <= ALLOWED_FROM_DATETIME, f"{path.name} imports {names}"


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_purity_rules_module_reads_no_clock_and_does_no_io(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))

    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute):
                assert func.attr not in CLOCK_READS, f"{path.name}:{node.lineno} .{func.attr}()"
            if isinstance(func, ast.Name):
                assert func.id not in {"open", "input", "print", "__import__", "exec", "eval"}, (
                    f"{path.name}:{node.lineno} {func.id}()"
                )


def test_purity_importing_the_engine_loads_no_framework():
    code = (
        "import sys, rules, rules.engine, rules.pool, rules.ledger, rules.estimate\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'faust', 'aiokafka', 'prometheus_client', 'asyncio', 'socket', 'stream_app'})\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )

    assert result.stdout.strip() == ""
