"""The code's shape: hf_cakd's layers as docs/architecture.md's table states them, no import circle
(type-checking and function-level imports included), no repository tooling inside the package;
scripts stay thin and apart."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "hf_cakd"
REPOSITORY_TOOLING = {"benchmarks", "scripts", "tests"}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules(root: Path) -> dict[str, Path]:
    return {module_name(path, root): path for path in sorted((root / PACKAGE).rglob("*.py"))}


def imports_of(path: Path, root: Path, modules: set[str]) -> set[str]:
    """The modules ``path`` imports anywhere, relative imports resolved; ``from package import module``
    counts as the module, ``from module import name`` as the module."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            submodules = {f"{target}.{alias.name}" for alias in node.names} & modules
            found |= submodules or {target}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return found - {name}


def layers_from_doc(doc: Path) -> list[tuple[str, list[str]]]:
    """The ``## Layers`` table, top layer first: each layer's name and the hf_cakd paths its modules column names."""
    section = doc.read_text().split("## Layers", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")][2:]  # after the header and its rule
    cells = [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]
    return [(row[0], re.findall(rf"`({PACKAGE}/[^`]*)`", row[1])) for row in cells]


def layer_of(path: str, layers: list[tuple[str, list[str]]]) -> str | None:
    """The layer whose row names ``path``, or the folder nearest to it."""
    matches = [
        (len(entry), layer)
        for layer, entries in layers
        for entry in entries
        if path == entry or (entry.endswith("/") and path.startswith(entry))
    ]
    return max(matches)[1] if matches else None


def layering_problems(root: Path) -> list[str]:
    """Every module outside the table, every import of a layer above, every import of repository tooling."""
    layers = layers_from_doc(root / "docs" / "architecture.md")
    rank = {layer: index for index, (layer, _) in enumerate(layers)}  # 0: the top
    modules = package_modules(root)
    located = {name: (path.relative_to(root).as_posix(), layer_of(path.relative_to(root).as_posix(), layers))
               for name, path in modules.items()}  # fmt: skip
    problems = [f"{path} is in no layer: add it to a row of docs/architecture.md's table"
                for path, layer in located.values() if layer is None]  # fmt: skip
    for name, path in modules.items():
        shown, layer = located[name]
        for target in sorted(imports_of(path, root, set(modules))):
            if target.split(".")[0] in REPOSITORY_TOOLING:
                problems.append(f"{shown} imports {target}: the package must not use the repository's tooling")
            elif target in located and layer and located[target][1] and rank[located[target][1]] < rank[layer]:
                problems.append(f"{shown} ({layer}) imports {target} ({located[target][1]}), a layer above it")
    return problems


def test_every_module_sits_in_a_documented_layer_and_imports_none_above_it():
    assert layering_problems(ROOT) == []


def test_the_layer_check_finds_a_planted_violation(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "architecture.md").write_text(
        "# x\n\n## Layers\n\n| layer | modules | owns |\n| --- | --- | --- |\n"
        "| high | `hf_cakd/__init__.py`, `hf_cakd/high.py`, `hf_cakd/sub/` | a |\n"
        "| low | `hf_cakd/low.py`, `hf_cakd/sub/low_here.py` | b |\n\n## Next\n\n| not | `hf_cakd/stray.py` | c |\n"
    )
    files = {
        "__init__.py": "from .high import thing\n",
        "high.py": "from . import low\nfrom .sub import mod\nthing = 1\n",  # downwards and sideways: allowed
        "low.py": "def f():\n    from .high import thing  # upwards, even inside a function\n",
        "stray.py": "import benchmarks.common\n",  # in no layer (its row is outside the section), and tooling
        "sub/__init__.py": "",
        "sub/mod.py": "from .. import low\n",
        "sub/low_here.py": "from . import mod\n",  # the nearest entry puts it in the lower layer: upwards
    }
    for relative, text in files.items():
        (tmp_path / "hf_cakd" / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "hf_cakd" / relative).write_text(text)
    assert sorted(layering_problems(tmp_path)) == [
        "hf_cakd/low.py (low) imports hf_cakd.high (high), a layer above it",
        "hf_cakd/stray.py imports benchmarks.common: the package must not use the repository's tooling",
        "hf_cakd/stray.py is in no layer: add it to a row of docs/architecture.md's table",
        "hf_cakd/sub/low_here.py (low) imports hf_cakd.sub.mod (high), a layer above it",
    ]


def test_no_import_circle_in_hf_cakd():
    modules = package_modules(ROOT)
    graph = {name: imports_of(path, ROOT, set(modules)) & set(modules) for name, path in modules.items()}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(n == goal or (n not in seen and not seen.add(n) and reaches(n, goal, seen)) for n in graph[start])

    circles = sorted(m for m in graph if reaches(m, m, set()))
    assert not circles, f"modules on an import circle: {circles}"


def test_scripts_hold_only_the_users_entry_points():
    """Benchmarks and experiments live in benchmarks/, outside the package and outside scripts/."""
    assert sorted(p.name for p in (ROOT / "scripts").glob("*.py")) == ["demo.py", "distill.py", "make_demo_data.py"]


def test_scripts_never_import_each_other_and_distill_stays_thin():
    scripts = {p.stem for p in (ROOT / "scripts").glob("*.py")}
    for path in (ROOT / "scripts").glob("*.py"):
        tree = ast.parse(path.read_text())
        imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not imported & scripts, f"{path.name} imports another script: {imported & scripts}"
    assert len((ROOT / "scripts" / "distill.py").read_text().splitlines()) < 100


MAX_FUNCTION_LINES, MAX_CLASS_LINES = 60, 200


def oversized_definitions(root: Path) -> list[str]:
    """Every function of hf_cakd over 60 lines and every class over 200, counted from ``def``/``class`` (or its
    first decorator) to the last line of its body, as the AST places them."""
    found = []
    for path in sorted((root / PACKAGE).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                lines = node.end_lineno - first + 1
                limit = MAX_CLASS_LINES if isinstance(node, ast.ClassDef) else MAX_FUNCTION_LINES
                if lines > limit:
                    found.append(f"{path.relative_to(root).as_posix()}:{node.lineno} {node.name} has {lines} lines (limit {limit})")
    return found


def test_no_function_over_60_lines_and_no_class_over_200_in_hf_cakd():
    assert oversized_definitions(ROOT) == []


def test_the_size_check_counts_real_lines(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(59))
    (tmp_path / PACKAGE).mkdir()
    (tmp_path / PACKAGE / "m.py").write_text(
        f"def fits():\n{body}\n\n\n@staticmethod\ndef too_long():\n{body}\n\n\nclass Big:\n"
        + "\n".join(f"    y{i} = {i}" for i in range(200))
        + "\n"
    )
    assert oversized_definitions(tmp_path) == [
        "hf_cakd/m.py:64 too_long has 61 lines (limit 60)",
        "hf_cakd/m.py:126 Big has 201 lines (limit 200)",
    ]
