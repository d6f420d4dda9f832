"""The modules of ``curatorch.data`` import each other without a cycle.

The import statements are read with ``ast`` (nothing is imported). A module-level import
is one that runs when the module is imported: in the module body or a class body, also
under ``if``/``try``/``with``, but not in a function nor under ``if TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import curatorch.data

PACKAGE = "curatorch.data"
ROOT = Path(curatorch.data.__file__).parent
WORLDS = {f"{PACKAGE}.shapes", f"{PACKAGE}.digits"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join((PACKAGE, *parts))


MODULES = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(node: ast.AST, *, module_level: bool) -> list[ast.Import | ast.ImportFrom]:
    """The import statements under ``node``; only those that run at import time when
    ``module_level``."""
    found: list[ast.Import | ast.ImportFrom] = []
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            found.append(child)
        elif module_level and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        elif module_level and isinstance(child, ast.If) and _is_type_checking(child.test):
            found += [i for n in child.orelse for i in _imports(n, module_level=True)]
        else:
            found += _imports(child, module_level=module_level)
    return found


def _targets(module: str, stmt: ast.Import | ast.ImportFrom) -> set[str]:
    """The modules of ``curatorch.data`` that ``stmt`` in ``module`` imports."""
    if isinstance(stmt, ast.Import):
        names = [alias.name for alias in stmt.names]
    else:
        base = stmt.module or ""
        if stmt.level:  # relative: from the package holding ``module``
            is_package = MODULES[module].name == "__init__.py"
            anchor = module.split(".")
            anchor = anchor[: len(anchor) - stmt.level + (1 if is_package else 0)]
            base = ".".join([*anchor, base] if base else anchor)
        # ``from pkg import sub`` imports the submodule ``pkg.sub`` where there is one
        names = [base] + [f"{base}.{alias.name}" for alias in stmt.names]
    out = set()
    for name in names:
        while name and name not in MODULES:  # ``import a.b.c`` binds the module a.b.c
            name = name.rpartition(".")[0] if name.startswith(PACKAGE + ".") else ""
        if name and name != module:
            out.add(name)
    return out


def _graph(*, module_level: bool) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        graph[module] = set()
        for stmt in _imports(tree, module_level=module_level):
            graph[module] |= _targets(module, stmt)
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` as ``[a, b, ..., a]``, or ``None``."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)) is not None:
            return cycle
    return None


def test_the_graph_is_read():
    graph = _graph(module_level=True)
    assert {f"{PACKAGE}.config", f"{PACKAGE}.registry", *WORLDS} <= set(graph)
    assert graph[f"{PACKAGE}.registry"] >= WORLDS
    assert f"{PACKAGE}.config" in graph[f"{PACKAGE}.shapes"]
    assert f"{PACKAGE}.registry" in graph[PACKAGE]


def test_module_level_imports_have_no_cycle():
    cycle = _find_cycle(_graph(module_level=True))
    assert cycle is None, "import cycle in curatorch.data: " + " -> ".join(cycle or [])


def test_the_worlds_do_not_import_each_other():
    graph = _graph(module_level=False)  # not even inside a function
    for world in WORLDS:
        assert not graph[world] & WORLDS, f"{world} imports {sorted(graph[world] & WORLDS)}"


def test_config_imports_no_world_nor_the_registry_at_import_time():
    deps = _graph(module_level=True)[f"{PACKAGE}.config"]
    assert not deps & {*WORLDS, f"{PACKAGE}.registry", PACKAGE}, sorted(deps)


def test_cycle_finder_finds_a_cycle():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_curatorch_imports_without_the_shard_libraries() -> None:
    """webdataset and braceexpand are imported only where shards are read or written (the
    borrowed GPU machine has neither)."""
    import subprocess
    import sys

    code = (
        "import builtins\n"
        "real = builtins.__import__\n"
        "def imp(name, *a, **k):\n"
        "    if name.split('.')[0] in ('webdataset', 'braceexpand'):\n"
        "        raise ImportError(name)\n"
        "    return real(name, *a, **k)\n"
        "builtins.__import__ = imp\n"
        "import curatorch.train, curatorch.selection, curatorch.eval, curatorch.data\n"
        "import curatorch.cli\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
