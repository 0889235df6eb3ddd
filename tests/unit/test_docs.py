"""The README stays a newcomer's page, and the docs stay navigable.

The README is short (at most ``README_MAX_LINES``) and links every page in
``docs/``; no relative link or image in the README or in ``docs/`` points at a
file or a heading that does not exist. Moving text between pages is how these
go wrong, and nothing else would notice.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
README_MAX_LINES = 250

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)


def _prose(text: str) -> str:
    """The text outside fenced code blocks: a `#` comment in a shell snippet is no heading."""
    return FENCE.sub("", text)


def link_targets(page: Path) -> list[str]:
    """Every link and image target in a Markdown page, outside code."""
    return LINK.findall(INLINE_CODE.sub("", _prose(page.read_text())))


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors of a page's headings, numbered as GitHub numbers repeated ones."""
    seen: dict[str, int] = {}
    found = set()
    for heading in HEADING.findall(_prose(page.read_text())):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def is_external(target: str) -> bool:
    return "://" in target or target.startswith(("mailto:", "//"))


def broken_links(page: Path) -> list[str]:
    """Each relative link of ``page`` whose file, or whose heading, does not exist."""
    broken = []
    for target in link_targets(page):
        if is_external(target):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no such heading in {dest.name}")
    return broken


def unlinked_pages(readme: Path, docs: Path) -> list[str]:
    """The Markdown pages in ``docs`` that the README does not link to."""
    linked = {
        (readme.parent / target.partition("#")[0]).resolve()
        for target in link_targets(readme)
        if not is_external(target) and target.partition("#")[0]
    }
    return sorted(page.name for page in docs.glob("*.md") if page.resolve() not in linked)


def test_readme_is_short() -> None:
    lines = len(README.read_text().splitlines())
    assert lines <= README_MAX_LINES, (
        f"README.md has {lines} lines; it holds what a newcomer needs in at most "
        f"{README_MAX_LINES}, the rest goes to a page in docs/"
    )


def test_readme_links_every_docs_page() -> None:
    assert unlinked_pages(README, DOCS) == [], "every page in docs/ must be linked from the README"


@pytest.mark.parametrize("page", [README, *sorted(DOCS.glob("*.md"))], ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    assert broken_links(page) == []


# The checks themselves, on made-up pages: each must catch what it is for.


def _tree(tmp_path: Path, readme: str, pages: dict[str, str]) -> tuple[Path, Path]:
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in pages.items():
        (docs / name).write_text(text)
    (tmp_path / "README.md").write_text(readme)
    return tmp_path / "README.md", docs


def test_a_link_to_a_missing_page_or_heading_is_found(tmp_path: Path) -> None:
    readme, docs = _tree(
        tmp_path,
        "[a](docs/a.md) [gone](docs/gone.md) [bad](docs/a.md#nowhere) [ok](docs/a.md#the-codec-server)\n"
        "![pic](static/missing.png) [web](https://example.com/x.md)\n",
        {"a.md": "# A\n\n## The codec server\n\n[back](../README.md#nothing) [self](#a)\n"},
    )
    assert broken_links(readme) == [
        "docs/gone.md: no such file",
        "docs/a.md#nowhere: no such heading in a.md",
        "static/missing.png: no such file",
    ]
    assert broken_links(docs / "a.md") == ["../README.md#nothing: no such heading in README.md"]


def test_links_and_headings_in_code_are_not_read(tmp_path: Path) -> None:
    readme, docs = _tree(
        tmp_path,
        "[a](docs/a.md#real) `[x](docs/nope.md)`\n\n```bash\n# not a heading\necho '[y](docs/nope.md)'\n```\n",
        {"a.md": "## Real\n\n```bash\n# Shell comment\n```\n"},
    )
    assert broken_links(readme) == []
    assert anchors(docs / "a.md") == {"real"}


def test_a_page_the_readme_does_not_link_is_found(tmp_path: Path) -> None:
    readme, docs = _tree(tmp_path, "[a](docs/a.md#top)\n", {"a.md": "# Top\n", "b.md": "# B\n"})
    assert unlinked_pages(readme, docs) == ["b.md"]


def test_anchors_follow_githubs_rules(tmp_path: Path) -> None:
    page = tmp_path / "p.md"
    page.write_text(
        "# Who may act on a booking (security notes)\n## `Saga.run`: the undo goes first\n## Notes\n## Notes\n"
    )
    assert anchors(page) == {
        "who-may-act-on-a-booking-security-notes",
        "sagarun-the-undo-goes-first",
        "notes",
        "notes-1",
    }


def test_the_readme_scenario_table_ends_with_the_held_scenarios_it_says_it_does() -> None:
    # "The last three only differ from happy when the trip is held": rows added
    # at the end of the table would silently change what that sentence names.
    from trip.scenarios import HELD

    text = README.read_text()
    table, after = text.split("| scenario | what happens | outcome |", 1)[1].split("\n\n", 1)
    names = [re.findall(r"`([a-z-]+)`", row.split("|")[1]) for row in table.strip().splitlines()[1:]]
    assert after.startswith("The last three only differ from `happy` when the trip is held")
    assert [n for row in names[-3:] for n in row] == [s.value for s in HELD]
