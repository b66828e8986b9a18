"""Figures of the code's shape (issue 13): lines per layer, the longest functions, and
imports placed inside functions.

    .venv/bin/python scripts/code_figures.py [ROOT] [--top N]

Lines are physical lines of Python files (docstrings and comments included); the
matcher's C core is counted apart. A layer is a package of node/ (node/*.py are the
top-level modules). Imports inside functions are counted outside node/cli/ (a
command imports what it needs when it runs, on purpose: `ncii-node --help` stays fast).
"""

from __future__ import annotations

import argparse
import ast
import collections
from pathlib import Path


def layer_of(path: Path) -> str:
    parts = path.parts
    if parts[0] == "protocol":
        return "protocol"
    if len(parts) == 2:
        return "node/*.py"
    return f"node/{parts[1]}"


def python_files(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for top in ("protocol", "node") for p in (root / top).rglob("*.py"))


def functions(tree: ast.AST):
    """(qualified name, lines) of every function and method."""
    def walk(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}{child.name}"
                yield name, child.end_lineno - child.lineno + 1
                yield from walk(child, name + ".")
            elif isinstance(child, ast.ClassDef):
                yield from walk(child, f"{prefix}{child.name}.")
            else:
                yield from walk(child, prefix)
    yield from walk(tree, "")


def nested_function_imports(tree: ast.AST) -> int:
    """Imports inside functions, each counted once (not again for an enclosing function)."""
    seen = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for child in ast.walk(node):
                if isinstance(child, (ast.Import, ast.ImportFrom)):
                    seen.add(id(child))
    return len(seen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", default=Path(__file__).resolve().parents[1], type=Path)
    parser.add_argument("--top", type=int, default=10)
    args = parser.parse_args()
    root = args.root
    lines: collections.Counter = collections.Counter()
    longest = []
    imports: collections.Counter = collections.Counter()
    for path in python_files(root):
        text = (root / path).read_text("utf-8")
        lines[layer_of(path)] += len(text.splitlines())
        tree = ast.parse(text)
        module = path.as_posix().removesuffix(".py").removeprefix("node/")
        longest += [(n, f"{module}:{name}") for name, n in functions(tree)]
        if not path.as_posix().startswith("node/cli/"):
            found = nested_function_imports(tree)
            if found:
                imports[path.as_posix()] = found
    c_lines = sum(len(p.read_text("utf-8", "replace").splitlines()) for p in (root / "node").rglob("*.c"))
    order = ["protocol"] + sorted(k for k in lines if k.startswith("node/") and k != "node/*.py") + ["node/*.py"]
    print("Lines per layer (Python, docstrings and comments included):")
    print(" | ".join(f"{layer} {lines[layer]}" + (f" (+{c_lines} C)" if layer == "node/matcher" and c_lines else "")
                     for layer in order if layer in lines))
    print(f"total {sum(lines.values())}")
    print(f"Longest functions (top {args.top}):")
    print(", ".join(f"{name} {n}" for n, name in sorted(longest, reverse=True)[:args.top]))
    print(f"Imports inside functions outside node/cli/: {sum(imports.values())}")
    print(", ".join(f"{path.removesuffix('.py')} {n}" for path, n in imports.most_common()))


if __name__ == "__main__":
    main()
