"""Imports follow the data flow: each module imports only modules above it in docs/architecture.md."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def documented_order() -> list[str]:
    rows = re.findall(r"^\| [a-z ]+ \| `(\w+)` \|", (ROOT / "docs" / "architecture.md").read_text(), re.M)
    assert rows, "docs/architecture.md has no module table"
    return rows


def package_imports(path: Path) -> set[str]:
    """Modules of this package that `path` imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found.update([node.module.split(".")[0]] if node.module else [a.name for a in node.names])
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("polyprag."):
            found.add(node.module.split(".")[1])
    return found


def test_every_module_is_in_the_table_once():
    order = documented_order()
    modules = sorted(p.stem for p in (ROOT / "polyprag").glob("*.py"))
    assert len(order) == len(set(order)), f"listed twice: {sorted({m for m in order if order.count(m) > 1})}"
    assert sorted(order) == modules, (f"missing from docs/architecture.md: {sorted(set(modules) - set(order))}; "
                                      f"listed but absent: {sorted(set(order) - set(modules))}")


def test_imports_point_up_the_table():
    order = documented_order()
    rank = {m: i for i, m in enumerate(order)}
    against = [f"{m} imports {d}" for m in order for d in sorted(package_imports(ROOT / "polyprag" / f"{m}.py"))
               if rank[d] >= rank[m]]
    assert not against, f"imports against the data flow (docs/architecture.md): {against}"


def test_no_function_over_60_lines():
    long = [f"{p.name}:{n.name} ({n.end_lineno - n.lineno + 1} lines)" for p in sorted((ROOT / "polyprag").glob("*.py"))
            for n in ast.walk(ast.parse(p.read_text())) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
            and n.end_lineno - n.lineno + 1 > 60]
    assert not long, f"functions over 60 lines (split them, STYLE.md): {long}"
