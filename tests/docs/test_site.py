"""The documentation: the docs site builds with MkDocs in strict mode (a broken link or anchor fails it), and the
README stays a newcomer's page whose links resolve."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from helpers.docs import MKDOCS_CONFIG, README, ROOT, nav_pages

#: the README is the front page (what it is, the two commands, a Python example, maps of the code and the docs);
#: the rest lives in docs/
README_MAX_LINES = 170
README_MAX_WIDTH = 200
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _build(config: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config),
                           "--site-dir", str(site)], cwd=config.parent, capture_output=True, text=True, timeout=300)


def _built_page(site: Path, page: Path) -> Path:
    return site / "index.html" if page.stem == "index" else site / page.stem / "index.html"


def test_site_builds_strictly(tmp_path):
    result = _build(MKDOCS_CONFIG, tmp_path / "site")
    assert result.returncode == 0, result.stdout + result.stderr
    pages = nav_pages()
    assert ROOT / "docs" / "architecture.md" in pages
    for page in pages:
        assert _built_page(tmp_path / "site", page).is_file(), page


def test_strict_build_fails_on_a_broken_anchor(tmp_path):
    """The build's link checks are on: a link to a heading that does not exist fails it, naming the link."""
    shutil.copy(MKDOCS_CONFIG, tmp_path / "mkdocs.yml")
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    page = tmp_path / "docs" / "paper.md"
    page.write_text(page.read_text() + "\n[broken](results.md#no-such-heading)\n")
    result = _build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert result.returncode != 0 and "results.md#no-such-heading" in result.stdout + result.stderr


def _prose_lines(text: str) -> list[tuple[int, str]]:
    """The lines outside fenced code blocks, numbered from 1."""
    lines, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced:
            lines.append((number, line))
    return lines


def test_readme_is_a_short_page():
    text = README.read_text()
    assert len(text.splitlines()) <= README_MAX_LINES, f"README.md has {len(text.splitlines())} lines"
    wide = [(number, len(line)) for number, line in _prose_lines(text) if len(line) > README_MAX_WIDTH]
    assert not wide, f"README.md lines over {README_MAX_WIDTH} characters (line, length): {wide}"


def _anchors(markdown: str) -> set[str]:
    """Heading anchors as GitHub and MkDocs both write them: lower case, punctuation dropped, spaces to hyphens."""
    headings = [line.lstrip("#").strip() for _, line in _prose_lines(markdown) if re.match(r"#{1,6} ", line)]
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def test_readme_links_resolve():
    """Each relative link in the README names a file of the repository, and its #anchor a heading there."""
    text = README.read_text()
    links = [link for _, line in _prose_lines(text) for link in _LINK.findall(line)]
    assert any(link.startswith("docs/") for link in links)
    for link in links:
        if re.match(r"[a-z]+://", link):
            continue
        path, _, anchor = link.partition("#")
        target = (ROOT / path) if path else README
        assert target.is_file(), f"README.md links to {link}: no such file"
        if anchor:
            assert anchor in _anchors(target.read_text()), f"README.md links to {link}: no such heading"
