"""Imports follow the data flow: each module imports only modules above it in docs/architecture.md, and the
sub-packages (the folders of polyprag/) hold modules, not code of their own."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "polyprag"


def documented_order() -> list[str]:
    rows = re.findall(r"^\| [a-z ]+ \| `([\w.]+)` \|", (ROOT / "docs" / "architecture.md").read_text(), re.M)
    assert rows, "docs/architecture.md has no module table"
    return rows


def dotted(path: Path) -> str:
    """polyprag/text/corpus.py -> "text.corpus"; polyprag/__init__.py -> "__init__"."""
    return ".".join(path.relative_to(PACKAGE).with_suffix("").parts)


def modules() -> dict[str, Path]:
    """Every module of the package by its dotted name, without the sub-packages' docstring-only __init__."""
    return {dotted(p): p for p in PACKAGE.rglob("*.py") if p.parent == PACKAGE or p.name != "__init__.py"}


def package_imports(path: Path, known: set[str]) -> set[str]:
    """Modules of this package that `path` imports, at the top or inside functions, by dotted name."""
    here = path.relative_to(PACKAGE).parent.parts
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = here[: len(here) - (node.level - 1)]
        elif (node.module or "").startswith("polyprag"):
            base, node.module = (), node.module.partition(".")[2] or None
        else:
            continue
        stem = ".".join(base + tuple((node.module or "").split(".") if node.module else ()))
        for alias in node.names:
            name = f"{stem}.{alias.name}".lstrip(".")
            found.add(name if name in known else stem)
    return found


def test_every_module_is_in_the_table_once():
    order = documented_order()
    found = sorted(modules())
    assert len(order) == len(set(order)), f"listed twice: {sorted({m for m in order if order.count(m) > 1})}"
    assert sorted(order) == found, (f"missing from docs/architecture.md: {sorted(set(found) - set(order))}; "
                                    f"listed but absent: {sorted(set(order) - set(found))}")


def test_imports_point_up_the_table():
    order = documented_order()
    rank = {m: i for i, m in enumerate(order)}
    paths = modules()
    against = [f"{m} imports {d}" for m in order for d in sorted(package_imports(paths[m], set(paths)))
               if rank[d] >= rank[m]]
    assert not against, f"imports against the data flow (docs/architecture.md): {against}"


def test_sub_packages_hold_only_their_docstring():
    # Re-exports in a sub-package's __init__ would hide which module a name lives in and invite import cycles.
    for init in PACKAGE.glob("*/__init__.py"):
        body = ast.parse(init.read_text()).body
        assert len(body) == 1 and isinstance(body[0], ast.Expr), f"{init}: only a docstring, please"


def test_at_least_four_sub_packages_and_no_module_over_500_lines():
    packages = sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py"))
    assert len(packages) >= 4, packages
    long = {name: n for name, p in modules().items() if (n := len(p.read_text().splitlines())) > 500}
    assert not long, f"modules over 500 lines (split them by stage): {long}"


def test_no_function_over_60_lines():
    long = [f"{name}:{n.name} ({n.end_lineno - n.lineno + 1} lines)" for name, p in sorted(modules().items())
            for n in ast.walk(ast.parse(p.read_text())) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
            and n.end_lineno - n.lineno + 1 > 60]
    assert not long, f"functions over 60 lines (split them, STYLE.md): {long}"


def test_mode_names_are_spelled_in_two_package_files_at_most():
    # A mode is named in `modes` (the registry) and `eval.bench` (bench's variants and comparisons); everything
    # else reads the registry, so a new mode touches those two files. Prose that mentions a mode does not count.
    from polyprag.modes import MODES
    names = set(MODES)
    # "poly" is also the adapters' mixing rule (Polytropon's: A = Σ w A_m), a stored setting, not a mode.
    not_modes = {"lm.adapters": {"poly"}, "kb.export": {"poly"}}

    def spells(name: str, path: Path) -> bool:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                words = node.value.split(",")
                if node.value in names - not_modes.get(name, set()) or (len(words) > 1 and set(words) <= names):
                    return True
        return False

    spelling = sorted(name for name, p in modules().items() if spells(name, p))
    assert spelling == ["eval.bench", "modes"], f"mode names spelled outside the registry: {spelling}"


def test_the_manifest_reads_the_training_settings_without_the_training_loop():
    paths = modules()
    imported = package_imports(paths["kb.manifest"], set(paths))
    assert "method.config" in imported and "method.train" not in imported, imported


def test_only_the_kb_package_names_a_knowledge_base_files():
    # The KB folder has one owner (kb/: store and lifecycle): the rest asks it, so a layout change is one place.
    # method.train writes a checkpoint folder of its own with two of these names.
    files = {"manifest.json", "manifest.sha256", "routing.safetensors", "inventory.safetensors", "augment.jsonl"}
    naming = sorted(name for name, p in modules().items() if not name.startswith("kb.") and name != "method.train"
                    and any(isinstance(n, ast.Constant) and n.value in files for n in ast.walk(ast.parse(p.read_text()))))
    assert not naming, f"modules outside kb/ that open a knowledge base's files by name: {naming}"
