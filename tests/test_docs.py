"""The documentation's promises: every relative link resolves, figures match their result files,
the command reference matches the commands, the README stays a short page."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import docs_cli  # noqa: E402
import docs_figures  # noqa: E402

PAGES = sorted([ROOT / "README.md", ROOT / "CONTRIBUTING.md", ROOT / "CHANGELOG.md", ROOT / "benchmarks" / "README.md",
                *(ROOT / "docs").glob("*.md")])
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def _anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lowercase, punctuation dropped, spaces as hyphens."""
    text = FENCE.sub("", page.read_text())
    heads = re.findall(r"^#+\s+(.*)$", text, re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in heads}


def _links(page: Path) -> list[str]:
    return [t for t in LINK.findall(FENCE.sub("", page.read_text())) if not re.match(r"[a-z]+:", t)]


def test_anchor_rule_follows_github():
    # GitHub's rule on a heading with a comma, a backquote and a slash.
    page = ROOT / "docs" / "benchmarks.md"
    assert "strain-and-why-no-kornia-or-numba" in _anchors(page)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    broken = []
    for target in _links(page):
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(target)
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)} links to missing files or headings: {broken}"


def test_figures_match_result_files():
    for page in docs_figures.PAGES:
        text = (ROOT / page).read_text()
        assert docs_figures.BLOCK.search(text), f"{page} should hold a figure block"
        assert docs_figures.render(text, page) == text, f"{page}: run python tools/docs_figures.py"


def test_cli_reference_matches_the_commands():
    text = docs_cli.PAGE.read_text()
    documented = {(m["prog"], m["cmd"]) for m in docs_cli.BLOCK.finditer(text)}
    assert documented == set(docs_cli._commands()), "every command should have its options table in docs/cli.md"
    assert docs_cli.render(text) == text, "docs/cli.md: run python tools/docs_cli.py"


def test_readme_is_a_short_page_with_an_index_of_docs():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    linked = {Path(t.partition("#")[0]).name for t in _links(ROOT / "README.md") if t.startswith("docs/")}
    assert {p.name for p in (ROOT / "docs").glob("*.md")} <= linked, "every docs page should be in the README's index"


def test_no_history_words_in_tracked_text():
    # The same words as a lab notebook would use, spelt so that this line does not match itself.
    words = re.compile(r"\bstop[ -]\d+\b|\b(?:this|earlier)[ ]session\b|\bbuild[ ]machine\b", re.I)
    hits = [p.relative_to(ROOT) for p in PAGES if words.search(p.read_text())]
    assert not hits, hits
