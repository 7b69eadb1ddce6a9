"""Print the import graph of superb_redundancy from its source (ast, nothing imported), its cycles, the
subpackages that import each other and the imports that point up the declared layers.

    python scripts/import_graph.py                    # subpackage -> subpackages it imports (lazy imports counted)
    python scripts/import_graph.py --modules          # the same, module by module
    python scripts/import_graph.py --module-level     # only the imports that run when a module is imported

Imports inside functions count by default (``--lazy``, still accepted, is that default): a lazy import is a
dependency all the same. The graph, the layer order (``LAYERS``) and the checks are those of
tests/test_architecture.py (reused, not copied). Exit status 1 when the graph shown has a module cycle, two
subpackages that import each other, or an import that points up the layers.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

_TEST = Path(__file__).resolve().parents[1] / "tests" / "test_architecture.py"


def _checker():
    spec = importlib.util.spec_from_file_location("test_architecture", _TEST)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modules", action="store_true", help="module by module, not by subpackage")
    view = parser.add_mutually_exclusive_group()
    view.add_argument("--lazy", action="store_true", help="imports inside functions counted too (the default)")
    view.add_argument("--module-level", action="store_true",
                      help="only imports that run when a module is imported")
    args = parser.parse_args(argv)
    checker = _checker()
    graph = checker.build_graph()
    edges = {m: dict(graph.module_level[m]) for m in graph.modules} if args.module_level else \
        checker.all_imports(graph)
    if args.modules:
        for name in sorted(edges):
            print(f"{name} -> {', '.join(sorted(edges[name])) or '-'}")
    else:
        packages: dict[str, set[str]] = {checker.subpackage(m): set() for m in edges}
        for source, target in checker.subpackage_edges(edges):
            packages[source].add(target)
        order = {name: i for i, name in enumerate(checker.LAYERS)}
        for name in sorted(packages, key=lambda p: (order.get(p, -1), p)):
            print(f"{name:11} -> {', '.join(sorted(packages[name], key=lambda p: (order.get(p, -1), p))) or '-'}")
    kind = "module-level" if args.module_level else "module-level and lazy"
    cycles = checker.find_cycles(edges)
    for cycle in cycles:
        print(f"cycle ({kind} imports): {' -> '.join(cycle)}")
    if not cycles:
        print(f"no cycles among {len(edges)} modules ({kind} imports)")
    found = checker.subpackage_edges(edges)
    pairs = checker.two_way_pairs(edges)
    for a, b in pairs:
        print(f"two-way ({kind} imports): {a} <-> {b}: {found[a, b][0]}; {found[b, a][0]}")
    if not pairs:
        print(f"no two subpackages import each other ({kind} imports)")
    upward = checker.upward_imports(edges)
    for line in upward:
        print(f"up the layers ({kind} imports): {line}")
    if not upward:
        print(f"every import points down the layers: {' < '.join(checker.LAYERS)}")
    return 1 if cycles or pairs or upward else 0


if __name__ == "__main__":
    sys.exit(main())
