"""The test suite's own layout: shared code lives in helpers, never in test modules."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Final

TESTS: Final = Path(__file__).resolve().parent


def _is_test_module(dotted: str) -> bool:
    """One of our test modules (not a library's, such as aiohttp.test_utils)."""
    return dotted.startswith("tests.") and dotted.split(".")[-1].startswith("test_")


def imports_of_test_modules(path: Path) -> list[str]:
    """The test modules `path` imports (by module, or by name from a package)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if _is_test_module(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if _is_test_module(node.module):
                found.append(node.module)
            found += [
                f"{node.module}.{a.name}"
                for a in node.names
                if a.name.startswith("test_")
            ]
    return found


def test_no_test_module_imports_another() -> None:
    """Fixtures come from conftest.py or a plugin in tests/helpers, helpers from
    tests/helpers: a test module imported by another runs its module-level code
    twice and hides its fixtures' origin."""
    offenders = {
        str(path.relative_to(TESTS)): found
        for path in sorted(TESTS.rglob("*.py"))
        if "vendor" not in path.parts and (found := imports_of_test_modules(path))
    }
    assert offenders == {}


def test_the_check_sees_each_form_of_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "import tests.gateway.test_pages\n"
        "from tests.e2e.test_browser import stack\n"
        "from tests.gateway import test_dashboard as base\n"
        "from tests.helpers.pages import make_site\n"
    )
    assert imports_of_test_modules(module) == [
        "tests.gateway.test_pages",
        "tests.e2e.test_browser",
        "tests.gateway.test_dashboard",
    ]
