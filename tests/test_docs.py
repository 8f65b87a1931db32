"""The documentation keeps up: every public name is in the API reference with a docstring, and the
README's two set-up commands are the ones the project promises."""

from __future__ import annotations

import ast
import inspect
import itertools
import re
from pathlib import Path

import pytest

import trio_ws
import trio_ws.testing

ROOT = Path(__file__).resolve().parent.parent
# type aliases: documented by a string after them
ALIASES = {"Handler", "ProcessRequest", "ProcessResponse", "Guard"}


def public_names() -> list[str]:
    return sorted(trio_ws.__all__)


@pytest.mark.parametrize("name", public_names())
def test_every_public_name_is_in_the_reference(name: str) -> None:
    reference = (ROOT / "docs" / "reference.md").read_text()
    assert f"::: trio_ws.{name}\n" in reference


@pytest.mark.parametrize("name", sorted(set(public_names()) - ALIASES))
def test_every_public_name_and_its_public_members_have_docstrings(name: str) -> None:
    obj = getattr(trio_ws, name)
    assert inspect.getdoc(obj), name
    if inspect.isclass(obj) and obj.__module__.startswith("trio_ws"):
        for member, value in vars(obj).items():
            if member.startswith("_") or not (inspect.isfunction(value) or isinstance(value, property)):
                continue
            assert inspect.getdoc(value), f"{name}.{member} has no docstring"


def test_type_aliases_have_docstrings() -> None:
    found = set()
    for path in (ROOT / "trio_ws").rglob("*.py"):
        body = ast.parse(path.read_text()).body
        for node, following in itertools.pairwise(body):
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
                name = node.targets[0].id
                documented = isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
                if name in ALIASES and documented:
                    found.add(name)
    assert found == ALIASES


def test_testing_names_are_in_the_reference() -> None:
    reference = (ROOT / "docs" / "reference.md").read_text()
    for name in ("open_test_client", "TestClient"):
        assert f"::: trio_ws.testing.{name}\n" in reference
        assert inspect.getdoc(getattr(trio_ws.testing, name))


def test_readme_set_up_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"```sh\n(.+?)\n```", readme)
    assert commands[0].endswith(".venv/bin/python examples/chat.py")
    assert commands[1].endswith(".venv/bin/python -m pytest")
    assert (ROOT / "examples" / "chat.py").exists()


#: Pages a reader copies an ``async def test_`` snippet from (the changelog and the reference only
#: speak of tests).
PAGES_WITH_TESTS = [
    path
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    if "async def test_" in path.read_text() and path.name not in ("changelog.md", "reference.md")
]


@pytest.mark.parametrize("path", PAGES_WITH_TESTS, ids=lambda p: p.name)
def test_every_page_with_a_test_snippet_says_how_to_run_it(path: Path) -> None:
    """A reader who copies a test learns on the same page to turn on pytest-trio's trio mode (else
    pytest refuses ``async def`` tests)."""
    assert len(PAGES_WITH_TESTS) >= 4
    assert "trio_mode = true" in path.read_text()
