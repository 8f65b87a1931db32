"""The map holds: layers import only those below them, no import cycle (not even for typing), the
sans-I/O core imports no trio, no module touches another module's private members, modules stay
small, and no two modules or classes share a name."""

from __future__ import annotations

import ast
import collections
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "trio_ws"

#: The layers, lowest first; a module may import its own layer's modules and those below.
LAYERS = {
    "protocol": 0,
    "connection": 1,
    "server": 2,
    "client": 2,
    "app": 3,
    "asgi": 4,
    "testing": 5,
    "_cli": 5,
    "__main__": 6,
    "__init__": 6,
}


def modules() -> dict[str, Path]:
    """Dotted name (``trio_ws.connection._inbox``) -> path."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports(module: str, path: Path) -> set[str]:
    """The ``trio_ws`` modules ``module`` imports, anywhere in it (typing-only imports too)."""
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("trio_ws"):
                found.add(target)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("trio_ws"))
    return found


ALL = modules()


def resolve(target: str) -> str:
    """The module an import names (``from ..protocol import X`` names the package)."""
    while target not in ALL and "." in target:
        target = target.rpartition(".")[0]
    return target


@pytest.mark.parametrize("module", sorted(ALL))
def test_layers_import_only_those_below(module: str) -> None:
    own = layer_of(module)
    for target in imports(module, ALL[module]):
        other = layer_of(resolve(target))
        if other == own:
            continue
        assert LAYERS[other] < LAYERS[own], f"{module} imports {target} ({other} is not below {own})"


def test_there_is_no_import_cycle() -> None:
    graph = {m: {resolve(t) for t in imports(m, p)} - {m} for m, p in ALL.items()}
    # A package's __init__ re-exports its modules: an edge from a module to its own package is a
    # cycle only if the package imports it back, which it always does, so resolve those to leaves.
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in graph.get(node, ()):
            if nxt.startswith(node + ".") or node.startswith(nxt + "."):
                continue  # a package and its own modules
            if state.get(nxt) == 1:
                raise AssertionError(" -> ".join([*trail, node, nxt]))
            if nxt not in state:
                visit(nxt, [*trail, node])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [])


def test_the_sans_io_core_imports_no_trio() -> None:
    for module, path in ALL.items():
        if layer_of(module) != "protocol":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            assert not any(n == "trio" or n.startswith("trio.") for n in names), module


def defined_names(tree: ast.Module) -> set[str]:
    """Every name a module defines: functions, classes, module and class attributes, ``self.x``
    assignments and ``__slots__`` entries."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("_"):
            names.add(node.value)  # __slots__ entries
    return names


#: Private names of the standard library that its own documentation tells users to use.
STDLIB = {"_exit", "_Compress", "_Decompress"}


@pytest.mark.parametrize("module", sorted(ALL))
def test_no_module_touches_another_modules_private_members(module: str) -> None:
    tree = ast.parse(ALL[module].read_text())
    own = defined_names(tree) | STDLIB
    foreign = [
        f"line {node.lineno}: .{node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
        and node.attr not in own
    ]
    assert not foreign, foreign


@pytest.mark.parametrize("module", sorted(ALL))
def test_modules_are_small_enough_to_read_in_one_sitting(module: str) -> None:
    assert len(ALL[module].read_text().splitlines()) <= 400


def test_no_two_modules_or_classes_share_a_name() -> None:
    files = collections.Counter(p.name for p in ALL.values() if p.name != "__init__.py")
    assert [name for name, n in files.items() if n > 1] == []
    classes: collections.Counter[str] = collections.Counter()
    for path in ALL.values():
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef):
                classes[node.name] += 1
    assert [name for name, n in classes.items() if n > 1] == []
