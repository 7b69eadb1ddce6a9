"""Print the import graph of superb_redundancy from its source (ast, nothing imported), and its cycles.

    python scripts/import_graph.py              # subpackage -> subpackages it imports at module level; cycles
    python scripts/import_graph.py --modules    # the same, module by module
    python scripts/import_graph.py --lazy       # imports inside functions counted too

The graph is the one tests/test_architecture.py checks (its parser is reused, not copied). Exit status 1 when
the graph shown has a cycle.
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


def _subpackage(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "(package)"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modules", action="store_true", help="module by module, not by subpackage")
    parser.add_argument("--lazy", action="store_true", help="also imports inside functions")
    args = parser.parse_args(argv)
    checker = _checker()
    graph = checker.build_graph()
    edges = {m: {**graph.module_level[m], **(graph.lazy[m] if args.lazy else {})} for m in graph.modules}
    if args.modules:
        for name in sorted(edges):
            print(f"{name} -> {', '.join(sorted(edges[name])) or '-'}")
    else:
        packages: dict[str, set[str]] = {}
        for name, targets in edges.items():
            own = _subpackage(name)
            packages.setdefault(own, set()).update(_subpackage(t) for t in targets if _subpackage(t) != own)
        for name in sorted(packages):
            print(f"{name:11} -> {', '.join(sorted(packages[name])) or '-'}")
    kind = "module-level and lazy" if args.lazy else "module-level"
    cycles = checker.find_cycles(edges)
    for cycle in cycles:
        print(f"cycle ({kind} imports): {' -> '.join(cycle)}")
    if not cycles:
        print(f"no cycles among {len(edges)} modules ({kind} imports)")
    return 1 if cycles else 0


if __name__ == "__main__":
    sys.exit(main())
