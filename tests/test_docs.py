"""The documentation's links: every relative link and ``#anchor`` in ``README.md`` and
``docs/**/*.md`` resolves, and the README stays a short front door."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 250

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"(`+)(?!`).*?(?<!`)\1(?!`)", re.DOTALL)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^()\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$", re.MULTILINE)
EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")   # http:, https:, mailto:, ...


def documents() -> list[Path]:
    """``README.md`` and every markdown page under ``docs/``."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def without_code(text: str) -> str:
    """The markdown with fenced blocks blanked (lines kept) and inline code removed."""
    text = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    return INLINE_CODE.sub("", text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its rendered text, lower-case, punctuation but
    ``-`` and ``_`` dropped, spaces as ``-``."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)   # links: their text
    text = text.replace("`", "").replace("*", "")
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors a page's headings make (a repeated heading gets ``-1``, ``-2``, ...)."""
    found: set[str] = set()
    counts: dict[str, int] = {}
    fenced = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), path.read_text())
    for match in HEADING.finditer(fenced):
        base = slug(match.group(2))
        n = counts.get(base, 0)
        counts[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def broken_links(path: Path) -> list[str]:
    """Each relative link of ``path`` whose file or anchor does not exist, described."""
    broken = []
    for target in LINK.findall(without_code(path.read_text())):
        if EXTERNAL.match(target):
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            broken.append(f"{target}: no file {linked}")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target}: no heading with anchor #{anchor} in {linked.name}")
    return broken


def test_the_slug_is_githubs():
    assert slug("Live changes: zones, thresholds, cameras") == (
        "live-changes-zones-thresholds-cameras")
    assert slug("The autoencoders' operating point (`threshold_by`)") == (
        "the-autoencoders-operating-point-threshold_by")
    assert slug("A new camera: collect, train, calibrate, watch") == (
        "a-new-camera-collect-train-calibrate-watch")


def test_broken_links_are_found(tmp_path):
    page = tmp_path / "page.md"
    (tmp_path / "other.md").write_text("# Other\n\n## Part two\n")
    page.write_text("# Page\n\n[ok](other.md#part-two) [self](#page) [gone](missing.md)\n"
                    "[bad anchor](other.md#part-three) [web](https://example.com/x)\n"
                    "`[in code](nowhere.md)`\n\n```\n[fenced](nowhere.md)\n# not a heading\n```\n")
    assert broken_links(page) == [
        f"missing.md: no file {tmp_path / 'missing.md'}",
        "other.md#part-three: no heading with anchor #part-three in other.md"]


@pytest.mark.parametrize("path", documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(path):
    assert broken_links(path) == []


def test_the_readme_is_a_short_front_door():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines, more than {README_MAX_LINES}: move detail into docs/")
    assert "docs/operations/security.md" in "\n".join(lines)
