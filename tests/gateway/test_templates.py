"""Compiled page templates are shared by the process's apps, never stale."""

from __future__ import annotations

from pathlib import Path

import jinja2

from gateway.web import CompiledTemplates


class Counted(CompiledTemplates):
    """Counts the templates compiled (each compile stores its code)."""

    def __init__(self) -> None:
        super().__init__()
        self.compiled = 0

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        self.compiled += 1
        super().dump_bytecode(bucket)


def render(directory: Path, cache: CompiledTemplates, name: str) -> str:
    """page.html rendered by a new environment (as each new app has)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(directory), autoescape=True, bytecode_cache=cache
    )
    return env.get_template("page.html").render(name=name)


def test_a_second_environment_reuses_the_code_and_sees_an_edit(tmp_path: Path) -> None:
    page = tmp_path / "page.html"
    page.write_text("Hello {{ name }}")
    cache = Counted()
    assert render(tmp_path, cache, "<a>") == "Hello &lt;a&gt;"
    assert render(tmp_path, cache, "b") == "Hello b"
    assert cache.compiled == 1

    page.write_text("Bye {{ name }}")
    assert render(tmp_path, cache, "b") == "Bye b"
    assert cache.compiled == 2
