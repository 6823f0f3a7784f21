"""The package's shape: rooms per component, no import cycle, one name per class."""

from __future__ import annotations

import ast
import functools
import re
from collections import defaultdict
from pathlib import Path

import tritonfleet

PACKAGE = Path(tritonfleet.__file__).parent
# Each runs as a service of its own: its `serve` in command.py.
COMPONENTS = ("gateway", "scheduler", "health", "node", "token_manager", "settler", "web")


@functools.cache
def modules() -> dict[str, ast.Module]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(("tritonfleet", *path.relative_to(PACKAGE).with_suffix("").parts))
        found[name.removesuffix(".__init__")] = ast.parse(path.read_text())
    return found


def imports(tree: ast.Module, known: set[str]) -> set[str]:
    """The project's modules a module imports at load time (TYPE_CHECKING blocks included)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tritonfleet"):
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in known else node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("tritonfleet")}
    return found


def test_no_module_imports_one_that_imports_it_back() -> None:
    graph = {name: imports(tree, set(modules())) for name, tree in modules().items()}
    cycles = []
    for start in graph:
        stack, seen = [(start, (start,))], set()
        while stack:
            name, path = stack.pop()
            for imported in graph.get(name, ()):
                if imported == start:
                    cycles.append(" → ".join((*path, start)))
                elif imported not in seen:
                    seen.add(imported)
                    stack.append((imported, (*path, imported)))
    assert cycles == []


def test_the_gateway_fronts_do_not_import_each_other() -> None:
    crossing = [
        f"{name} imports {imported}"
        for name, tree in modules().items()
        for front, other in (("http", "grpc"), ("grpc", "http"))
        if name.startswith(f"tritonfleet.gateway.{front}")
        for imported in imports(tree, set(modules()))
        if imported.startswith(f"tritonfleet.gateway.{other}")
    ]
    assert crossing == []


def test_class_names_are_unique_across_the_package() -> None:
    where = defaultdict(list)
    for name, tree in modules().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                where[node.name].append(name)
    assert {cls: found for cls, found in where.items() if len(found) > 1} == {}


def test_every_component_has_its_command_and_the_cli_runs_it() -> None:
    from tritonfleet.cli import COMMANDS

    targets = {target.partition(":")[0] for _, target, _ in COMMANDS.values()}
    for component in COMPONENTS:
        assert (PACKAGE / component / "command.py").is_file(), component
        assert f"tritonfleet.{component}.command" in targets, component


def test_the_architecture_map_names_only_files_and_functions_that_exist() -> None:
    """Every `file.py` of docs/architecture.md exists; every function a trace row names is
    defined in that row's file (`Class.method` or `function`)."""
    doc = (PACKAGE.parents[1] / "docs" / "architecture.md").read_text()
    missing = []
    files = {str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py")}
    for path in re.findall(r"`((?:[\w/]+/)?\w+\.py)`", doc):
        # A bare name is in the folder of its row (the rooms table); a path is from the package.
        if path not in files and not any(file.endswith("/" + path) for file in files):
            missing.append(path)
    for path, function in re.findall(r"^\| [\w ]+ \| `([\w/]+\.py)` \| `([\w.]+)` \|", doc, re.MULTILINE):
        if function not in defined(PACKAGE / path):
            missing.append(f"{path}: {function}")
    assert missing == []


def defined(path: Path) -> set[str]:
    """`function` and `Class.method` names defined in a module."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            names.add(node.name)
            names |= {
                f"{node.name}.{item.name}"
                for item in node.body
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
            }
    return names
