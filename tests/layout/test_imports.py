"""The shape of the code: which package may import which, and no import circles.

Read from the sources' import statements (module level and inside functions alike),
so a lazy import does not hide an arrow. `docs/architecture.md` draws the same rules.
"""

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("rules", "schemas", "stream_app", "adapters")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


def imported(name: str, path: Path, known: dict[str, Path]) -> Iterator[str]:
    """The project's modules that `name` imports (a package's names resolve to the
    submodule when there is one)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                       for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                yield target


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: set(imported(name, path, known)) for name, path in known.items()}


def in_package(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_no_module_imports_another_that_imports_it_back() -> None:
    edges = graph()
    state: dict[str, int] = {}  # 1: on the path, 2: done
    circles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                circles.append([*path[path.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for start in sorted(edges):
        if start not in state:
            visit(start, [start])
    assert circles == []


def test_the_core_imports_no_shell() -> None:
    """`rules/` and `schemas/` import nothing of the shell; the wire types no Kafka or
    Faust either (`tests/rules/test_purity.py` holds `rules/` to more: no I/O, no clock)."""
    edges = graph()
    for name, targets in edges.items():
        if in_package(name, "rules") or in_package(name, "schemas"):
            assert not [t for t in targets if in_package(t, "stream_app")
                        or in_package(t, "adapters")], name
    for path in (ROOT / "schemas").rglob("*.py"):
        tree = ast.parse(path.read_text())
        outside = {alias.name.split(".")[0] for node in ast.walk(tree)
                   if isinstance(node, ast.Import) for alias in node.names}
        outside |= {(node.module or "").split(".")[0] for node in ast.walk(tree)
                    if isinstance(node, ast.ImportFrom) and not node.level}
        assert not outside & {"faust", "aiokafka", "mode", "prometheus_client"}, path


def test_only_the_commands_compose_the_shell_with_the_adapters() -> None:
    """No arrow from the shell's core up to `adapters/` or to `commands/`; the
    adapters use the settings modules and `kafka/`, never the worker."""
    edges = graph()
    for name, targets in edges.items():
        command_line = in_package(name, "stream_app.commands") or name == "stream_app.__main__"
        if in_package(name, "stream_app") and not command_line:
            assert not [t for t in targets if in_package(t, "adapters")
                        or in_package(t, "stream_app.commands")], name
        if in_package(name, "adapters"):
            assert not [t for t in targets if in_package(t, "stream_app.worker")
                        or in_package(t, "stream_app.commands")
                        or in_package(t, "stream_app.site")
                        or in_package(t, "stream_app.planning")], name


def test_the_graph_is_read_from_the_real_imports() -> None:
    """The checks above are only as good as the graph: it holds arrows known to exist."""
    edges = graph()
    assert "rules" in edges["stream_app.replay"]
    assert "stream_app.replay.merge_order" in edges["stream_app.replay.reader_process"]
    assert "stream_app.worker.app" in edges["stream_app.commands.worker"]
    assert any(in_package(t, "adapters") for name, targets in edges.items()
               if in_package(name, "stream_app.commands") for t in targets)
