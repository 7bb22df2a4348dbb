"""How our modules import each other: public names only, pages wired by app.py alone."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parent.parent
PACKAGES: Final = ("gateway", "tenant_service", "contract", "deploy", "bench", "tests")


def _imports(path: Path, root: Path) -> list[tuple[str, str]]:
    """(module, name) of each `from ... import name` in `path`, relative ones resolved."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    package = parts[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = package[: len(package) - node.level + 1]
            module = ".".join([*base, *([node.module] if node.module else [])])
        else:
            module = node.module or ""
        found += [(module, alias.name) for alias in node.names]
    return found


def private_imports(path: Path, root: Path = ROOT) -> list[str]:
    """`module.name` of each underscore name `path` imports from one of our modules."""
    return [
        f"{module}.{name}"
        for module, name in _imports(path, root)
        if module.split(".")[0] in PACKAGES
        and name.startswith("_")
        and not name.startswith("__")
    ]


def _sources() -> list[Path]:
    return [
        path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if "migrations" not in path.parts
    ]


def test_no_module_imports_another_ones_private_names() -> None:
    """A helper two modules need has a public name in a module both import."""
    offenders = {
        str(path.relative_to(ROOT)): found
        for path in _sources()
        if (found := private_imports(path))
    }
    assert offenders == {}


def test_the_check_sees_private_names_of_our_modules_only(tmp_path: Path) -> None:
    module = tmp_path / "gateway" / "web" / "m.py"
    module.parent.mkdir(parents=True)
    module.write_text(
        "from gateway.auth import _SECRET, REDIS_ERRORS\n"
        "from .views import _duration\n"
        "from .. import _top\n"
        "from highspy._core import _Highs\n"
        "from __future__ import annotations\n"
    )
    assert private_imports(module, tmp_path) == [
        "gateway.auth._SECRET",
        "gateway.web.views._duration",
        "gateway._top",
    ]


def test_only_app_imports_page_modules() -> None:
    """The API and the rest of the gateway do not depend on pages (app.py wires them)."""
    pages = {path.stem for path in (ROOT / "gateway" / "web").glob("*.py")}
    offenders = {
        path.name: [
            f"{module}.{name}"
            for module, name in _imports(path, ROOT)
            if module.startswith("gateway.web.")
            or (module == "gateway.web" and name in pages)
        ]
        for path in sorted((ROOT / "gateway").glob("*.py"))
        if path.name != "app.py"
    }
    assert {name: found for name, found in offenders.items() if found} == {}
