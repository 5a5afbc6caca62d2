"""The repository's layout rules, read from the source with `ast` (nothing here imports the code).

- no import cycle inside a package (module-level imports; `if TYPE_CHECKING:` blocks excluded);
- every third-party import of a package is declared in that package's pyproject.toml;
- nothing under services/, libs/, cli/, simulators/ or bench/ imports `tests`;
- modules <= 400 lines and functions <= 60 lines in services/, libs/ and cli/;
- every module of a package starts with a docstring saying what it is for.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIRS = ("services", "libs", "cli", "simulators")
SIZED_DIRS = ("services", "libs", "cli")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60

# Justified exceptions to the size rule: "path[:function]" -> one-line reason.
SIZE_EXCEPTIONS: dict[str, str] = {}


@dataclass
class Package:
    """One pyproject.toml with its `src/` tree."""

    root: Path
    distribution: str
    dependencies: list[str]
    modules: dict[str, Path] = field(default_factory=dict)

    @property
    def import_names(self) -> set[str]:
        return {name.split(".")[0] for name in self.modules}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert match, requirement
    return _normalise(match.group(1))


def _module_name(src: Path, path: Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _packages() -> list[Package]:
    found = []
    for top in PACKAGE_DIRS:
        for pyproject in sorted((ROOT / top).glob("**/pyproject.toml")):
            if ".venv" in pyproject.parts:
                continue
            project = tomllib.loads(pyproject.read_text())["project"]
            package = Package(
                root=pyproject.parent,
                distribution=_normalise(project["name"]),
                dependencies=[_requirement_name(r) for r in project.get("dependencies", [])],
            )
            src = pyproject.parent / "src"
            for path in sorted(src.rglob("*.py")):
                package.modules[_module_name(src, path)] = path
            found.append(package)
    assert found, f"no package found under {PACKAGE_DIRS}"
    return found


PACKAGES = _packages()


def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """The dotted names an import statement brings in (relative imports resolved)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        parts = module.split(".")
        keep = len(parts) - node.level + (1 if is_package else 0)
        base = ".".join([*parts[:keep], *([base] if base else [])])
    return [base, *(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")]


def _module_level_imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """Imports run when the module is imported: not in functions, not under TYPE_CHECKING."""
    pending: list[ast.stmt] = list(tree.body)
    while pending:
        stmt = pending.pop()
        if isinstance(stmt, ast.Import | ast.ImportFrom):
            yield stmt
        elif isinstance(stmt, ast.If):
            if not _is_type_checking(stmt.test):
                pending.extend(stmt.body)
            pending.extend(stmt.orelse)
        elif isinstance(stmt, ast.Try):
            pending.extend([*stmt.body, *stmt.orelse, *stmt.finalbody])
            for handler in stmt.handlers:
                pending.extend(handler.body)
        elif isinstance(stmt, ast.With | ast.ClassDef):
            pending.extend(stmt.body)


def _all_imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node


def _import_graph(package: Package) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, path in package.modules.items():
        is_package = path.name == "__init__.py"
        targets: set[str] = set()
        for node in _module_level_imports(_parse(path)):
            names = _imported(node, module, is_package)
            if isinstance(node, ast.ImportFrom):
                # `from a import b`: the submodule a.b when there is one, else a itself.
                subs = [n for n in names[1:] if n in package.modules]
                targets.update(subs or ([names[0]] if names[0] in package.modules else []))
            else:
                targets.update(n for n in names if n in package.modules)
        targets.discard(module)
        graph[module] = targets
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_inside_a_package() -> None:
    offenders = [
        f"{package.distribution}: {' <-> '.join(cycle)}"
        for package in PACKAGES
        for cycle in _cycles(_import_graph(package))
    ]
    assert not offenders, "import cycles (module-level imports):\n" + "\n".join(offenders)


def _import_names_of(distributions: dict[str, set[str]], dist: str) -> set[str]:
    return distributions.get(dist, set()) | {dist.replace("-", "_")}


def _distribution_imports() -> dict[str, set[str]]:
    """Distribution name -> the top-level names it installs (local packages read from src/)."""
    result: dict[str, set[str]] = {}
    for top, dists in packages_distributions().items():
        for dist in dists:
            result.setdefault(_normalise(dist), set()).add(top)
    for package in PACKAGES:
        result[package.distribution] = package.import_names
    return result


def test_every_third_party_import_is_declared() -> None:
    distributions = _distribution_imports()
    offenders = []
    for package in PACKAGES:
        allowed = set(package.import_names)
        for dist in package.dependencies:
            allowed |= _import_names_of(distributions, dist)
        for module, path in package.modules.items():
            is_package = path.name == "__init__.py"
            for node in _all_imports(_parse(path)):
                if isinstance(node, ast.ImportFrom) and node.level:
                    continue
                top = _imported(node, module, is_package)[0].split(".")[0]
                if top in sys.stdlib_module_names or top == "__future__" or top in allowed:
                    continue
                offenders.append(f"{_rel(path)}:{node.lineno}: {top} ({package.distribution})")
    assert not offenders, (
        "third-party imports not declared in the package's pyproject.toml dependencies:\n"
        + "\n".join(sorted(set(offenders)))
    )


def _sources(tops: tuple[str, ...]) -> Iterator[Path]:
    for top in tops:
        for path in sorted((ROOT / top).rglob("*.py")):
            if ".venv" not in path.parts:
                yield path


def test_nothing_outside_the_tests_imports_tests() -> None:
    offenders = []
    for path in _sources((*PACKAGE_DIRS, "bench")):
        for node in _all_imports(_parse(path)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            if any(name == "tests" or name.startswith("tests.") for name in names):
                offenders.append(f"{_rel(path)}:{node.lineno}")
    assert not offenders, "production code or benches importing `tests`:\n" + "\n".join(offenders)


def test_modules_and_functions_stay_small() -> None:
    offenders = []
    for path in _sources(SIZED_DIRS):
        rel = _rel(path)
        lines = len(path.read_text().splitlines())
        if lines > MAX_MODULE_LINES and rel not in SIZE_EXCEPTIONS:
            offenders.append(f"{rel}: module of {lines} lines (> {MAX_MODULE_LINES})")
        for node in ast.walk(_parse(path)):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            key = f"{rel}:{node.name}"
            if length > MAX_FUNCTION_LINES and key not in SIZE_EXCEPTIONS:
                offenders.append(
                    f"{rel}:{node.lineno}: {node.name} of {length} lines (> {MAX_FUNCTION_LINES})"
                )
    assert not offenders, "too large:\n" + "\n".join(offenders)


def test_every_module_says_what_it_is_for() -> None:
    offenders = [
        _rel(path)
        for package in PACKAGES
        for path in package.modules.values()
        if ast.get_docstring(_parse(path)) is None
    ]
    assert not offenders, "modules without a docstring:\n" + "\n".join(offenders)


def test_size_exceptions_are_still_needed() -> None:
    stale = [key for key in SIZE_EXCEPTIONS if not (ROOT / key.split(":")[0]).exists()]
    assert not stale, "size exceptions for files that no longer exist:\n" + "\n".join(stale)
