"""docs/architecture.md stays true: every module it names exists, every module is named there, and the
package imports without cycles (module-level and function-level imports alike)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "batchlab"


def documented_modules() -> set[str]:
    """Module paths (relative to the package) in the tree block of docs/architecture.md."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    tree = text.split("```")[1]
    found, folder = set(), ""
    for line in tree.splitlines()[2:]:
        name = line.split()[0] if line.strip() else ""
        depth = (len(line) - len(line.lstrip())) // 2
        if name.endswith("/"):
            folder = name if depth == 1 else folder
        elif name.endswith(".py"):
            found.add((folder if depth == 2 else "") + name)
    return found


def test_every_module_is_on_the_map_and_the_map_names_only_modules():
    actual = {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
              if p.name != "__init__.py" or p.parent != PACKAGE / "spec" / "recipes"}
    documented = documented_modules()
    assert documented - actual == set(), "named in docs/architecture.md but missing"
    assert actual - documented == set(), "modules not on the map in docs/architecture.md"


def _imports(path: Path, module: str) -> set[str]:
    is_package = path.name == "__init__.py"
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                base = ".".join(anchor[: len(anchor) - node.level + 1] + ([base] if base else []))
            targets |= {base} | {f"{base}.{a.name}" for a in node.names}
    return targets


def test_no_import_cycles():
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path

    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {m: {o for t in _imports(p, m) if t.startswith("batchlab") and (o := owner(t))
                 and o != m and not m.startswith(o + ".")} for m, p in modules.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycles.append(path[path.index(n):] + [n])
            elif n not in state:
                visit(n, [*path, n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert cycles == []


def test_code_cites_the_work_not_the_seed_numbers():
    offenders = [f"{p.relative_to(PACKAGE)}:{i}" for p in PACKAGE.rglob("*") if p.suffix in (".py", ".toml")
                 for i, line in enumerate(p.read_text().splitlines(), 1) if re.search(r"(?i)\bseed[ -]00\d", line)]
    assert offenders == []
