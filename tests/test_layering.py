"""Imports point one way (docs/architecture.md): plugins -> proto; cli -> server -> jobs -> pipeline;
watch -> jobs; pipeline imports nothing of ours and no transport. Read from the source with ``ast``,
function-level imports included, so a lazy import cannot slip an arrow back in."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from .conftest import REPO


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, module: str | None = None) -> set[str]:
    """Every module ``path`` (the module ``module``) imports, relative imports resolved."""
    package = (module or _module_name(path)).split(".")
    if path.name != "__init__.py":
        package.pop()
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            head = ".".join([*base, node.module] if node.module else base)
            found.add(head)
            found.update(f"{head}.{alias.name}" for alias in node.names)  # `from . import x`
    return found


def _sources(package: str) -> list[Path]:
    return sorted(p for p in (REPO / package).rglob("*.py") if "__pycache__" not in p.parts)


def _forbidden(names: set[str], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(n for n in names if any(n == f or n.startswith(f + ".") for f in forbidden))


def _hits(package: str, forbidden: tuple[str, ...]) -> list[str]:
    return [f"{path.relative_to(REPO)} imports {name}" for path in _sources(package)
            for name in _forbidden(imports_of(path), forbidden)]


@pytest.mark.parametrize("package, forbidden", [
    ("pipeline", ("grpc", "grpc_health", "grpc_reflection", "google.protobuf", "proto", "daemon",
                  "plugin_krita", "plugin_gimp", "krita", "gi")),
    # jobs share the contract's plain types (proto.events, proto.overrides), never the wire
    ("daemon/jobs", ("daemon.server", "daemon.cli", "daemon.watch", "daemon.install", "grpc",
                     "proto.client", "proto.dermis", "proto.bulk", "proto.messages", "proto.discovery")),
    ("daemon/watch", ("daemon.server", "daemon.cli", "daemon.install", "grpc")),
    ("daemon/server", ("daemon.cli", "daemon.install")),
    ("daemon/install", ("daemon.cli", "daemon.server", "daemon.jobs", "daemon.watch", "pipeline")),
    ("proto", ("pipeline", "daemon", "plugin_krita", "plugin_gimp", "numpy", "torch", "PIL")),
    ("plugin_krita", ("pipeline", "daemon", "plugin_gimp", "numpy", "torch")),
    ("plugin_gimp", ("pipeline", "daemon", "plugin_krita", "numpy", "torch")),
])
def test_no_import_points_the_wrong_way(package, forbidden):
    assert _sources(package), f"{package} has no sources"
    assert _hits(package, forbidden) == []


def test_the_checker_sees_relative_and_lazy_imports(tmp_path):
    """Negative control: arrows back, written the ways this code base writes imports, are caught."""
    probe = tmp_path / "probe.py"
    probe.write_text("import grpc\n\ndef f():\n    from ..server import wire\n"
                     "    from ..cli.entry import main\n    from . import queue\n")
    names = imports_of(probe, "daemon.jobs.probe")
    assert _forbidden(names, ("daemon.server", "daemon.cli", "grpc")) == [
        "daemon.cli.entry", "daemon.cli.entry.main", "daemon.server", "daemon.server.wire", "grpc"]
    assert "daemon.jobs.queue" in names


def test_daemon_top_level_holds_at_most_three_modules():
    assert len(list((REPO / "daemon").glob("*.py"))) <= 3
