"""The plugin boundary: built-ins use only voxplug's public API, and the core never imports a built-in.

Rules, read from every ``import`` statement (top level or inside functions) of the source tree:

* code under ``plugins/`` imports from voxplug only ``voxplug`` itself (``hookimpl``) and ``voxplug.api``;
  ``voxplug.testing`` is the harness plugin authors use in their *tests*, so plugins may not import it either;
* code under ``voxplug/`` imports no built-in plugin package, and only ``voxplug.testing`` itself imports
  ``voxplug.testing`` (the harness installs what it needs; the core does not reach into it);
* there is no import circle between the packages (the core, the test harness and each built-in).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PUBLIC = {"voxplug", "voxplug.api"}


def imported_modules(path: Path, root: Path = ROOT) -> Iterator[tuple[int, str]]:
    """``(line, module)`` for every absolute import in ``path``; ``from voxplug import x`` yields ``voxplug.x``
    when ``x`` is a submodule of the tree at ``root``, else ``voxplug``."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                yield node.lineno, submodule if _is_module(submodule, root) else node.module


def _is_module(dotted: str, root: Path) -> bool:
    parts = dotted.split(".")
    for base in (root, root / "plugins"):
        target = base.joinpath(*parts)
        if target.with_suffix(".py").is_file() or (target / "__init__.py").is_file():
            return True
    return False


def builtin_packages(root: Path) -> set[str]:
    """The import names of the built-in plugins: the packages under ``plugins/``."""
    return {path.parent.name for path in (root / "plugins").glob("*/__init__.py")}


def package_of(module: str, builtins: set[str]) -> str | None:
    """The node of the package graph ``module`` belongs to, or None for a module outside the project."""
    top = module.split(".")[0]
    if top in builtins:
        return top
    if module == "voxplug.testing" or module.startswith("voxplug.testing."):
        return "voxplug.testing"
    return "voxplug" if top == "voxplug" else None


def boundary_violations(root: Path) -> list[str]:
    """Every import that crosses the plugin boundary the wrong way, as ``file:line imports module``."""
    builtins = builtin_packages(root)
    found = []
    for path in sorted((root / "plugins").rglob("*.py")):
        for line, module in imported_modules(path, root):
            if package_of(module, builtins) in ("voxplug", "voxplug.testing") and module not in PUBLIC:
                found.append(f"{path.relative_to(root)}:{line} imports {module} (use voxplug.api)")
    for path in sorted((root / "voxplug").rglob("*.py")):
        inside_testing = path.relative_to(root).parts[:2] == ("voxplug", "testing")
        for line, module in imported_modules(path, root):
            package = package_of(module, builtins)
            if package in builtins or (package == "voxplug.testing" and not inside_testing):
                found.append(f"{path.relative_to(root)}:{line} imports {module}")
    return found


def package_graph(root: Path) -> dict[str, set[str]]:
    """Which package imports which: the core, the test harness and each built-in, from every import statement."""
    builtins = builtin_packages(root)
    graph: dict[str, set[str]] = {}
    for path in sorted([*(root / "voxplug").rglob("*.py"), *(root / "plugins").rglob("*.py")]):
        source = package_of(".".join(path.relative_to(root).with_suffix("").parts).removeprefix("plugins."), builtins)
        if source is None:
            continue
        for _, module in imported_modules(path, root):
            target = package_of(module, builtins)
            if target is not None and target != source:
                graph.setdefault(source, set()).add(target)
    return graph


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every elementary circle of ``graph``, each once, starting at its smallest node."""
    circles = []

    def walk(start: str, node: str, path: list[str]) -> None:
        for following in sorted(graph.get(node, ())):
            if following == start:
                circles.append([*path, start])
            elif following > start and following not in path:
                walk(start, following, [*path, following])

    for start in sorted(graph):
        walk(start, start, [start])
    return circles


def test_plugins_import_only_the_public_api_and_the_core_no_builtin() -> None:
    violations = boundary_violations(ROOT)
    assert not violations, "imports across the plugin boundary:\n" + "\n".join(violations)


def test_no_import_circle_between_packages() -> None:
    circles = import_circles(package_graph(ROOT))
    assert not circles, "import circles: " + "; ".join(" -> ".join(circle) for circle in circles)


def test_every_public_name_resolves() -> None:
    import voxplug.api

    missing = [name for name in voxplug.api.__all__ if getattr(voxplug.api, name, None) is None]
    assert not missing and len(set(voxplug.api.__all__)) == len(voxplug.api.__all__)


def test_importing_the_api_loads_neither_torch_nor_numpy() -> None:
    import subprocess
    import sys

    code = "import sys, voxplug.api\nprint(sorted({'torch', 'numpy', 'transformers'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("where", "line", "expected"),
    [
        ("plugins/voxplug_jsonl/extra.py", "from voxplug.data.manifest import iter_jsonl\n", "voxplug.data.manifest"),
        ("plugins/voxplug_jsonl/extra.py", "import voxplug.testing.speech\n", "voxplug.testing.speech"),
        ("plugins/voxplug_jsonl/extra.py", "from voxplug import config\n", "voxplug.config"),
        ("voxplug/data/extra.py", "def f():\n    from voxplug_space.demo_app import build_demo\n", "voxplug_space"),
        ("voxplug/training/extra.py", "from voxplug.testing import cpu_deepspeed\n", "voxplug.testing"),
    ],
)
def test_the_boundary_check_catches_a_wrong_import(tmp_path: Path, where: str, line: str, expected: str) -> None:
    """A copy of the tree's layout with one bad import added fails the check, naming the file and the module."""
    for package in ("voxplug/data", "voxplug/training", "voxplug/testing", "plugins/voxplug_jsonl"):
        (tmp_path / package).mkdir(parents=True)
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "voxplug" / "__init__.py").write_text("")
    (tmp_path / "voxplug" / "config.py").write_text("")
    (tmp_path / "plugins" / "voxplug_space").mkdir()
    (tmp_path / "plugins" / "voxplug_space" / "__init__.py").write_text("")
    (tmp_path / "plugins" / "voxplug_jsonl" / "ok.py").write_text("from voxplug import hookimpl\nimport voxplug.api\n")
    assert boundary_violations(tmp_path) == []
    (tmp_path / where).write_text(line)
    [violation] = boundary_violations(tmp_path)
    assert violation.startswith(where) and expected in violation


def test_the_circle_check_finds_a_circle() -> None:
    graph = {"voxplug": {"voxplug_space"}, "voxplug_space": {"voxplug"}, "voxplug_granary": {"voxplug"}}
    assert import_circles(graph) == [["voxplug", "voxplug_space", "voxplug"]]
