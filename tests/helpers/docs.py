"""Where the documentation lives: the README, the docs site's pages in mkdocs.yml's nav order, the configs' README."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
MKDOCS_CONFIG = ROOT / "mkdocs.yml"
#: the downstream configs' README, whose command blocks run after the site's (one place to change if it moves)
DOWNSTREAM_CONFIGS_README = ROOT / "superb_redundancy" / "downstream_configs" / "README.md"


def nav_pages(config: Path = MKDOCS_CONFIG) -> list[Path]:
    """The docs site's pages in its nav's order, sections flattened, external links left out."""
    site = yaml.safe_load(config.read_text())
    docs_dir = config.parent / site.get("docs_dir", "docs")
    pages: list[Path] = []

    def walk(entries: list) -> None:
        for entry in entries:
            target = next(iter(entry.values())) if isinstance(entry, dict) else entry
            if isinstance(target, list):
                walk(target)
            elif not str(target).startswith(("http://", "https://")):
                pages.append(docs_dir / target)

    walk(site["nav"])
    return pages
