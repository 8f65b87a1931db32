"""The documentation site as users read it: built with mkdocs (strict), then checked page by page."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: A reST role that reached the page as text instead of becoming a link or code.
RAW_ROLE = re.compile(r":(class|meth|func|attr|data|exc|mod|obj):")
#: Words of how the project is made, which mean nothing to a user.
INTERNAL = re.compile(r"\bseeds?\b|shared/|\bissue \d+", re.IGNORECASE)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(out)],
        cwd=ROOT,
        check=True,
        timeout=300,
    )
    return out


def text_of(page: Path) -> str:
    """The page's visible text, roughly: tags and the search index's JSON left out."""
    html = page.read_text()
    html = re.sub(r"<(script|style)\b.*?</\1>", "", html, flags=re.DOTALL)
    return re.sub(r"<[^>]+>", "", html)


def test_no_raw_role_is_left_in_any_page(site: Path) -> None:
    pages = sorted(site.rglob("*.html"))
    assert len(pages) > 10
    found = {str(p.relative_to(site)): RAW_ROLE.findall(text_of(p)) for p in pages}
    assert {page: roles for page, roles in found.items() if roles} == {}


def test_roles_became_links_to_the_reference(site: Path) -> None:
    reference = (site / "reference" / "index.html").read_text()
    # WebSocketOptions' docstring names WebSocket with a role: it links to WebSocket's entry
    assert re.search(r'<a[^>]+href="#trio_ws\.WebSocket"', reference)
    assert re.search(r'<a[^>]+href="#trio_ws\.WebSocket\.accept"', reference)


def test_user_pages_say_nothing_of_how_the_project_is_made(site: Path) -> None:
    pages = [p for p in site.rglob("*.html") if "404" not in p.name]
    found = {str(p.relative_to(site)): INTERNAL.findall(text_of(p)) for p in pages}
    assert {page: words for page, words in found.items() if words} == {}
