"""The README and docs/ hold together as pages: every relative link and #anchor resolves, every page
is reachable from the README, headings never skip a level, and the README stays short."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import REPO

README_MAX_LINES = 200
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~)")


def prose_lines(text: str) -> list[str]:
    """The page's lines outside fenced code blocks (a '# comment' in a shell block is no heading)."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line.strip()):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def headings(page: Path) -> list[tuple[int, str]]:
    return [
        (len(m.group(1)), m.group(2).strip())
        for line in prose_lines(page.read_text())
        if (m := re.match(r"^(#{1,6}) (.+)$", line))
    ]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*\*|\*", "", heading).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found: set[str] = set()
    for _, heading in headings(page):
        base, n = slug(heading), 0
        while (candidate := base if n == 0 else f"{base}-{n}") in found:
            n += 1
        found.add(candidate)
    return found


def links(page: Path) -> list[str]:
    return [m.group(1) for line in prose_lines(page.read_text()) for m in LINK.finditer(line)]


def test_the_pages_are_found() -> None:
    assert len(PAGES) >= 10 and all(p.is_file() for p in PAGES)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_and_anchor_resolves(page: Path) -> None:
    checked = 0
    for target in links(page):
        if re.match(r"^[a-z]+:", target):  # https:, mailto: ...: not checked here (no network)
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        assert resolved.exists(), f"{page.name}: link to {target!r}: {resolved} does not exist"
        assert REPO in resolved.parents or resolved == REPO, f"{page.name}: {target!r} leaves the repository"
        if anchor:
            assert resolved.suffix == ".md", f"{page.name}: anchor on a file that is not a page: {target!r}"
            assert anchor in anchors(resolved), f"{page.name}: {target!r}: no heading with anchor #{anchor}"
        checked += 1
    assert checked > 0 or page.name == "mobile.md", f"{page.name} links nowhere"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_one_title_and_no_skipped_heading_level(page: Path) -> None:
    levels = [level for level, _ in headings(page)]
    assert page.read_text().startswith("# ") and levels.count(1) == 1, f"{page.name}: one '# title', first"
    for before, after in zip(levels, levels[1:], strict=False):
        assert after <= before + 1, f"{page.name}: a level-{after} heading follows a level-{before} one"


def test_every_docs_page_is_linked_from_the_readme() -> None:
    linked = {(REPO / t.partition("#")[0]).resolve() for t in links(REPO / "README.md")}
    for page in PAGES[1:]:
        assert page.resolve() in linked, f"README.md does not link {page.relative_to(REPO)}"


def test_the_readme_is_short() -> None:
    lines = len((REPO / "README.md").read_text().splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move detail to docs/"


def test_the_readme_links_licence_changelog_and_examples() -> None:
    targets = set(links(REPO / "README.md"))
    assert {"LICENSE", "CHANGELOG.md", "examples/embed.py"} <= targets


def test_slugs_follow_github() -> None:
    assert slug("Embed it (no torch)") == "embed-it-no-torch"
    assert slug("Several processes, GPUs or machines (torchrun)") == "several-processes-gpus-or-machines-torchrun"
    assert slug("`make cuda-test`") == "make-cuda-test"
