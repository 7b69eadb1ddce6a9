"""The package's import graph: no cycle among the imports our modules make when they are imported.

Every module of ``superb_redundancy`` (and of ``upstreams/``, installed as ``superb_redundancy.upstreams``) is
parsed with :mod:`ast`, never imported. An import is *module-level* when it runs as the module is imported (at
the top, in a class body, in an ``if`` or ``try`` there) and *lazy* when it is inside a function; imports under
``if TYPE_CHECKING:`` never run and are left out. Only imports between our own modules are edges; importing
``a.b.c`` also runs ``a`` and ``a.b`` first, but those implicit edges to parent packages are not counted (a
package that re-exports its submodules would otherwise be a cycle with each of them).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: dotted package -> its folder (setup.cfg's package_dir puts upstreams/ inside the package)
PACKAGES = {"superb_redundancy": ROOT / "superb_redundancy", "superb_redundancy.upstreams": ROOT / "upstreams"}


@dataclass
class ImportGraph:
    modules: dict[str, Path]
    #: module -> {imported module: first line}, for imports that run when the module is imported
    module_level: dict[str, dict[str, int]] = field(default_factory=dict)
    #: the same for imports inside functions (they run when the function is called)
    lazy: dict[str, dict[str, int]] = field(default_factory=dict)


def find_modules(packages: dict[str, Path] = PACKAGES) -> dict[str, Path]:
    """Dotted module name -> file, a package named by its ``__init__.py``."""
    modules = {}
    for package, folder in packages.items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join([package, *parts])] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.Module) -> list[tuple[ast.stmt, bool]]:
    """Every import statement with whether it is lazy (inside a function)."""
    found = []

    def visit(node: ast.AST, lazy: bool) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append((node, lazy))
            return
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child, lazy)
            return
        inner = lazy or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(tree, False)
    return found


def _targets(node: ast.stmt, module: str, is_package: bool, known: dict[str, Path]) -> list[str]:
    """Our modules an import statement imports (the deepest of ours each name resolves to)."""

    def ours(name: str) -> str | None:
        parts = name.split(".")
        for end in range(len(parts), 0, -1):
            candidate = ".".join(parts[:end])
            if candidate in known:
                return candidate
        return None

    if isinstance(node, ast.Import):
        return [t for t in (ours(alias.name) for alias in node.names) if t]
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        base = ".".join(package[:len(package) - (node.level - 1)])
        source = f"{base}.{node.module}" if node.module else base
    else:
        source = node.module or ""
    targets = []
    for alias in node.names:
        submodule = f"{source}.{alias.name}"
        target = submodule if submodule in known else ours(source)
        if target:
            targets.append(target)
    return targets


def build_graph(packages: dict[str, Path] = PACKAGES) -> ImportGraph:
    modules = find_modules(packages)
    graph = ImportGraph(modules)
    for module, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        graph.module_level[module], graph.lazy[module] = {}, {}
        for node, lazy in _imports(tree):
            edges = graph.lazy[module] if lazy else graph.module_level[module]
            for target in _targets(node, module, path.name == "__init__.py", modules):
                if target != module:
                    edges.setdefault(target, node.lineno)
    return graph


def find_cycles(edges: dict[str, dict[str, int]]) -> list[list[str]]:
    """One cycle (``[a, b, ..., a]``) per strongly connected component that has one (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges.get(start, {}))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, {})))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(set(component))
    return [_cycle_in(component, edges) for component in components]


def _cycle_in(component: set[str], edges: dict[str, dict[str, int]]) -> list[str]:
    """A shortest cycle through the component's first module (breadth-first inside the component)."""
    start = min(component)
    parents = {start: None}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for child in sorted(edges.get(node, {})):
            if child == start:
                path = [node]
                while parents[path[-1]] is not None:
                    path.append(parents[path[-1]])
                return [*reversed(path), start]
            if child in component and child not in parents:
                parents[child] = node
                queue.append(child)
    raise AssertionError(f"no cycle through {start} in {sorted(component)}")


def describe(cycle: list[str], graph: ImportGraph) -> str:
    steps = [f"{a} (line {graph.module_level[a][b]}) -> {b}" for a, b in zip(cycle, cycle[1:])]
    return "; ".join(steps)


# ---------------------------------------------------------------------------------------------- the checks
def test_no_cycle_among_module_level_imports():
    graph = build_graph()
    cycles = find_cycles(graph.module_level)
    assert not cycles, "import cycle(s) among module-level imports:\n" + \
        "\n".join(describe(cycle, graph) for cycle in cycles)


def test_the_graph_sees_the_package():
    """The parser found our modules and their edges: an empty graph would pass the check above vacuously."""
    graph = build_graph()
    assert "superb_redundancy.hub.upstreams" in graph.modules and "superb_redundancy.upstreams.mimic.hubconf" in \
        graph.modules
    assert "superb_redundancy.hub.plugins" in graph.module_level["superb_redundancy.hub.upstreams"]
    assert "superb_redundancy.study.state" in graph.module_level["superb_redundancy.study.executors"]
    assert "superb_redundancy.study.steps" in graph.lazy["superb_redundancy.study.state"]


def test_cycles_are_found_and_lazy_imports_kept_apart(tmp_path):
    """The checker itself, on a made-up package: a module-level cycle through a relative import is reported; a
    lazy import back, an import under TYPE_CHECKING and a parent package's re-export are not cycles."""
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("from pkg.a import A\n")
    (package / "a.py").write_text("from pkg.sub import b\nA = 1\n")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "b.py").write_text("from ..c import C\n")
    (package / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n"
        "class C:\n    def f(self):\n        import pkg.a\n")
    graph = build_graph({"pkg": package})
    assert find_cycles(graph.module_level) == []
    assert graph.module_level["pkg.sub.b"] == {"pkg.c": 1} and graph.lazy["pkg.c"] == {"pkg.a": 6}
    (package / "c.py").write_text("import pkg.a as a\n")
    graph = build_graph({"pkg": package})
    assert find_cycles(graph.module_level) == [["pkg.a", "pkg.sub.b", "pkg.c", "pkg.a"]]
    assert describe(["pkg.a", "pkg.sub.b", "pkg.c", "pkg.a"], graph) == \
        "pkg.a (line 1) -> pkg.sub.b; pkg.sub.b (line 1) -> pkg.c; pkg.c (line 1) -> pkg.a"
