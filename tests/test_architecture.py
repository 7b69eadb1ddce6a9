"""The package's import graph: layers that point one way, counting the imports made inside functions too.

Every module of ``superb_redundancy`` (and of ``upstreams/``, installed as ``superb_redundancy.upstreams``) is
parsed with :mod:`ast`, never imported. An import is *module-level* when it runs as the module is imported (at
the top, in a class body, in an ``if`` or ``try`` there) and *lazy* when it is inside a function; imports under
``if TYPE_CHECKING:`` never run and are left out. Only imports between our own modules are edges; importing
``a.b.c`` also runs ``a`` and ``a.b`` first, but those implicit edges to parent packages are not counted (a
package that re-exports its submodules would otherwise be a cycle with each of them).

The checks count both kinds: a lazy import is still a dependency, it only runs later. No module cycle, no two
subpackages that import each other, and every import points down :data:`LAYERS` or stays in its own subpackage.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: dotted package -> its folder
PACKAGES = {"superb_redundancy": ROOT / "superb_redundancy"}


#: the subpackages from the bottom up: a module imports only from its own subpackage or from one listed before it.
#: ``(package)`` is ``superb_redundancy/__init__.py`` (its public names are loaded by name, on first use).
LAYERS = (
    "downstream_configs",  # data: s3prl configs per task and setting (an empty __init__, found by importlib.resources)
    "studies",      # data: the shipped study files (likewise)
    "core",         # files, audio, the config loader, s3prl's upstream contract: nothing of ours
    "statistics",   # the evidence of a score: intervals, chance, retention
    "data",         # tasks, splits, the synthetic corpus
    "models",       # families, checkpoints, shapes, Hugging Face folders, the shipped models
    "hub",          # s3prl: compat fixes, registries, install(), the runner
    "downstreams",  # our s3prl downstream tasks
    "analysis",     # layer similarity and blocks
    "distill",      # what mimicking and healing share: the teacher, its feature cache, the loss, clips, resume
    "pruning",      # objectives, plans, specs, pruned upstreams, healing, curves
    "mimic",        # mimicking networks: modules, upstream, artifacts, step-1 training
    "upstreams",    # the s3prl hub entries of the pruned and mimic families
    "compute",      # parameters, MACs, latency
    "results",      # experiments, run records, exports, the leaderboard
    "study",        # studies: config, plan, steps, executors
    "cli",          # the command line
    "__main__",     # python -m superb_redundancy
    "(package)",    # the package's public face
)


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


def all_imports(graph: ImportGraph) -> dict[str, dict[str, int]]:
    """module -> {imported module: first line}, module-level and lazy imports together."""
    return {m: {**graph.lazy[m], **graph.module_level[m]} for m in graph.modules}


def subpackage(module: str, root: str = "superb_redundancy") -> str:
    """The subpackage a module belongs to (``core`` for ``superb_redundancy.core.files``); the root package's own
    ``__init__`` is ``(package)``."""
    parts = module.split(".")
    return parts[1] if parts[0] == root and len(parts) > 1 else "(package)"


def subpackage_edges(edges: dict[str, dict[str, int]]) -> dict[tuple[str, str], list[str]]:
    """(importing subpackage, imported subpackage) -> the module imports behind it (``a (line n) -> b``)."""
    found: dict[tuple[str, str], list[str]] = {}
    for module, targets in sorted(edges.items()):
        for target, line in sorted(targets.items()):
            pair = (subpackage(module), subpackage(target))
            if pair[0] != pair[1]:
                found.setdefault(pair, []).append(f"{module} (line {line}) -> {target}")
    return found


def two_way_pairs(edges: dict[str, dict[str, int]]) -> list[tuple[str, str]]:
    """Subpackages that import each other (each pair once, sorted)."""
    pairs = subpackage_edges(edges)
    return sorted((a, b) for a, b in pairs if a < b and (b, a) in pairs)


def upward_imports(edges: dict[str, dict[str, int]], layers: tuple[str, ...] = LAYERS) -> list[str]:
    """Every import from a subpackage to one above it in ``layers`` (or to one ``layers`` does not name)."""
    rank = {name: i for i, name in enumerate(layers)}
    found = []
    for (source, target), imports in subpackage_edges(edges).items():
        if source not in rank or target not in rank:
            found.append(f"{source} -> {target}: not in LAYERS ({imports[0]})")
        elif rank[target] > rank[source]:
            found += [f"{source} -> {target} (up): {line}" for line in imports]
    return found


# ---------------------------------------------------------------------------------------------- the checks
def test_no_cycle_among_module_level_imports():
    graph = build_graph()
    cycles = find_cycles(graph.module_level)
    assert not cycles, "import cycle(s) among module-level imports:\n" + \
        "\n".join(describe(cycle, graph) for cycle in cycles)


def test_no_cycle_among_modules_counting_lazy_imports():
    graph = build_graph()
    edges = all_imports(graph)
    cycles = find_cycles(edges)
    assert not cycles, "import cycle(s), imports inside functions counted:\n" + "\n".join(
        "; ".join(f"{a} (line {edges[a][b]}) -> {b}" for a, b in zip(cycle, cycle[1:])) for cycle in cycles)


def test_no_two_subpackages_import_each_other():
    """Counting imports inside functions: a lazy import back up is still a dependency both ways."""
    edges = all_imports(build_graph())
    pairs = two_way_pairs(edges)
    found = subpackage_edges(edges)
    assert not pairs, "subpackages importing each other:\n" + "\n".join(
        f"{a} <-> {b}: {found[a, b][0]}; {found[b, a][0]}" for a, b in pairs)


def test_every_import_points_down_the_layers():
    graph = build_graph()
    assert set(LAYERS) >= {subpackage(m) for m in graph.modules}, "a subpackage missing from LAYERS"
    upward = upward_imports(all_imports(graph))
    assert not upward, "imports that point up LAYERS:\n" + "\n".join(upward)


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


def test_two_way_pairs_and_upward_imports_count_lazy_imports(tmp_path):
    """The layer checks on a made-up package: a lazy import back makes a two-way pair and an upward import; an
    import inside one subpackage is neither."""
    package = tmp_path / "pkg"
    for sub in ("low", "high"):
        (package / sub).mkdir(parents=True)
        (package / sub / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "high" / "a.py").write_text("from pkg.low import b\nfrom pkg.high import c\n")
    (package / "high" / "c.py").write_text("")
    (package / "low" / "b.py").write_text("X = 1\n")
    graph = build_graph({"pkg": package})
    edges = all_imports(graph)
    assert subpackage("pkg.high.a", root="pkg") == "high"
    assert two_way_pairs({m: {t: n for t, n in e.items()} for m, e in edges.items()}) == []
    (package / "low" / "b.py").write_text("def f():\n    from pkg.high.c import C\n")
    edges = all_imports(build_graph({"pkg": package}))
    renamed = {m.replace("pkg.", "superb_redundancy.", 1): {t.replace("pkg.", "superb_redundancy.", 1): n
                                                            for t, n in e.items()} for m, e in edges.items()}
    assert two_way_pairs(renamed) == [("high", "low")]
    assert upward_imports(renamed, layers=("(package)", "low", "high")) == \
        ["low -> high (up): superb_redundancy.low.b (line 2) -> superb_redundancy.high.c"]
    assert find_cycles(renamed) == []  # a two-way pair of subpackages need not be a module cycle


def test_test_modules_have_unique_basenames():
    """pytest imports test modules by basename (the tests have no __init__.py): a second tests/*/test_x.py is an
    'import file mismatch' error under xdist, which a run on one folder does not show."""
    seen: dict[str, list[str]] = {}
    for path in (ROOT / "tests").rglob("test_*.py"):
        seen.setdefault(path.name, []).append(str(path.relative_to(ROOT)))
    assert {name: paths for name, paths in seen.items() if len(paths) > 1} == {}
