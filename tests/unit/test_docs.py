"""The repository's documentation stands alone and every reference in it resolves.

- Every relative link in every Markdown file leads to a file or directory inside
  the repository and, when it names a heading of a Markdown file (`#fragment`),
  to a heading that exists there (GitHub's anchor rules).
- Every `docs/<name>` path mentioned in the repository's own text files exists.
- Nothing points at the design's old home outside the repository.

The checks are functions of a root directory, so the last tests run them on a
small tree with deliberate faults: a checker that cannot fail would prove nothing.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Not the repository's own files: environments, dependencies, build output, caches.
SKIP_DIRS = frozenset(
    {
        ".git",
        ".tools",
        ".venv",
        "node_modules",
        "build",
        "__pycache__",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
    }
)
# Text files whose mentions of `docs/...` are checked: sources, docs, build and
# deployment files, and extension-less scripts with a shell shebang.
TEXT_SUFFIXES = frozenset(
    {
        ".py",
        ".pyi",
        ".md",
        ".toml",
        ".sh",
        ".proto",
        ".h",
        ".hpp",
        ".c",
        ".cpp",
        ".ini",
        ".cfg",
        ".yaml",
        ".yml",
        ".conf",
        ".service",
        ".txt",
    }
)
# Built from pieces, so that this file does not mention them itself.
OUTSIDE_MENTIONS = ("../" + "shared", "DESIGN" + ".md", "/work/" + "shared")

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
# A code span may wrap a line but not cross a blank line (the end of a paragraph).
_CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`)((?:(?!\n[ \t]*\n).)+?)(?<!`)\1(?!`)", re.DOTALL)
_HTML_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_INLINE_LINK = re.compile(
    r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>\n]*>|[^\s)]+)(?:\s+\"[^\"]*\")?\s*\)"
)
_REFERENCE_DEFINITION = re.compile(r"^ {0,3}\[[^\]\n]+\]:\s*(<[^>\n]*>|\S+)", re.MULTILINE)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_ATX_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT_UNDERLINE = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_HTML_ANCHOR = re.compile(r"<a\s[^>]*\b(?:name|id)=\"([^\"]+)\"", re.IGNORECASE)
# `docs/<name>` as a path from the repository's root: not part of a longer path or URL.
_DOCS_PATH = re.compile(r"(?<![\w./-])docs/((?:[\w.-]+/)*[\w.-]*[\w-])")


def _walk(root: Path) -> Iterator[Path]:
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if d not in SKIP_DIRS)
        for name in sorted(files):
            yield Path(directory) / name


def markdown_files(root: Path) -> list[Path]:
    return [p for p in _walk(root) if p.suffix == ".md"]


def text_files(root: Path) -> list[Path]:
    return [
        p
        for p in _walk(root)
        if p.suffix in TEXT_SUFFIXES or (not p.suffix and _has_shell_shebang(p))
    ]


def _has_shell_shebang(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            first = handle.readline(200)
    except OSError:
        return False
    return first.startswith(b"#!") and first.rstrip().endswith((b"sh", b"bash"))


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


def _blank(match: re.Match[str]) -> str:
    """The same text with everything but line breaks blanked, so line numbers stay."""
    return re.sub(r"[^\n]", " ", match.group(0))


def _without_code_blocks(text: str) -> list[str]:
    """The lines of a Markdown text with fenced code blocks blanked."""
    lines = text.split("\n")
    fence: str | None = None
    for i, line in enumerate(lines):
        marker = _FENCE.match(line)
        if fence is None and marker:
            fence = marker.group(1)
        elif fence is not None and _closes(fence, marker, line):
            fence = None
        elif fence is None:
            continue
        lines[i] = ""
    return lines


def _closes(fence: str, marker: re.Match[str] | None, line: str) -> bool:
    """A closing fence: the same character, at least as long, nothing after it."""
    if marker is None:
        return False
    found = marker.group(1)
    return found[0] == fence[0] and len(found) >= len(fence) and not line.strip().strip(fence[0])


def _prose(text: str) -> str:
    """A Markdown text with code blocks, code spans and comments blanked."""
    text = "\n".join(_without_code_blocks(text))
    text = _HTML_COMMENT.sub(_blank, text)
    return _CODE_SPAN.sub(_blank, text)


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading (before numbering repeats)."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links and images: their text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading anchor of a Markdown text, with GitHub's `-1`, `-2` for repeats."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    lines = _without_code_blocks(text)
    for i, line in enumerate(lines):
        heading: str | None = None
        atx = _ATX_HEADING.match(line)
        if atx:
            heading = atx.group(2) or ""
        elif (
            i > 0
            and _SETEXT_UNDERLINE.match(line)
            and lines[i - 1].strip()
            and not lines[i - 1].lstrip().startswith(("#", "|", "-", "*", "+", ">"))
        ):
            heading = lines[i - 1]
        if heading is None:
            continue
        slug = github_slug(_CODE_SPAN.sub(lambda m: m.group(2), heading))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    found.update(_HTML_ANCHOR.findall(text))
    return found


def links(text: str) -> Iterator[tuple[int, str]]:
    """(line, target) of every inline link, image and reference definition."""
    prose = _prose(text)
    for pattern in (_INLINE_LINK, _REFERENCE_DEFINITION):
        for match in pattern.finditer(prose):
            target = match.group(1)
            if target.startswith("<") and target.endswith(">"):
                target = target[1:-1]
            yield prose.count("\n", 0, match.start(1)) + 1, target


def broken_links(root: Path) -> list[str]:
    """Relative links that lead nowhere, out of the repository, or to a missing heading."""
    root = root.resolve()
    problems: list[str] = []
    anchor_cache: dict[Path, set[str]] = {}
    for source in markdown_files(root):
        where = source.relative_to(root)
        for line, target in links(_read(source)):
            if _SCHEME.match(target) or target.startswith("//"):
                continue  # a URL: not this test's business
            raw_path, _, fragment = target.partition("#")
            path = urllib.parse.unquote(raw_path)
            if not path:
                resolved = source.resolve()
            elif path.startswith("/"):
                resolved = (root / path.lstrip("/")).resolve()
            else:
                resolved = (source.parent / path).resolve()
            if not resolved.is_relative_to(root):
                problems.append(f"{where}:{line}: {target} leads out of the repository")
                continue
            if not resolved.exists():
                problems.append(f"{where}:{line}: {target} does not exist")
                continue
            if fragment and resolved.suffix == ".md":
                if resolved not in anchor_cache:
                    anchor_cache[resolved] = anchors(_read(resolved))
                if urllib.parse.unquote(fragment) not in anchor_cache[resolved]:
                    problems.append(f"{where}:{line}: {target} names no heading of that file")
    return problems


def missing_docs(root: Path) -> list[str]:
    """Mentions of `docs/<name>` whose file does not exist."""
    root = root.resolve()
    problems: list[str] = []
    for source in text_files(root):
        for number, line in enumerate(_read(source).splitlines(), start=1):
            for match in _DOCS_PATH.finditer(line):
                if not (root / "docs" / match.group(1)).exists():
                    where = source.relative_to(root)
                    problems.append(f"{where}:{number}: docs/{match.group(1)} does not exist")
    return problems


def outside_mentions(root: Path) -> list[str]:
    """Mentions of the design's old home outside the repository."""
    root = root.resolve()
    problems: list[str] = []
    for source in text_files(root):
        for number, line in enumerate(_read(source).splitlines(), start=1):
            for needle in OUTSIDE_MENTIONS:
                if needle in line:
                    where = source.relative_to(root)
                    problems.append(f"{where}:{number}: mentions {needle}")
    return problems


# -- the repository -----------------------------------------------------------------------
def test_the_checks_see_the_documentation() -> None:
    found = {p.relative_to(ROOT).as_posix() for p in markdown_files(ROOT)}
    for expected in ("README.md", "docs/design.md", "docs/architecture.md"):
        assert expected in found
    assert not any(p.startswith((".venv/", "node_modules/")) for p in found)


def test_every_relative_link_resolves() -> None:
    problems = broken_links(ROOT)
    assert not problems, "\n".join(problems)


def test_every_docs_path_mentioned_exists() -> None:
    problems = missing_docs(ROOT)
    assert not problems, "\n".join(problems)


def test_nothing_points_outside_the_repository() -> None:
    problems = outside_mentions(ROOT)
    assert not problems, "\n".join(problems)


def test_the_readme_links_the_design_and_the_architecture() -> None:
    targets = {target for _, target in links(_read(ROOT / "README.md"))}
    assert {"docs/design.md", "docs/architecture.md"} <= targets


# -- the checks themselves ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("heading", "slug"),
    [
        (
            "Durability: WAL + `synchronous=NORMAL`, checkpoint every second",
            "durability-wal--synchronousnormal-checkpoint-every-second",
        ),
        ("decode.json — device → edge", "decodejson--device--edge"),
        ("Schema (version 3, `PRAGMA user_version`)", "schema-version-3-pragma-user_version"),
        ("Ids and names", "ids-and-names"),
        ("See [the table](design.md)", "see-the-table"),
    ],
)
def test_github_slugs(heading: str, slug: str) -> None:
    assert github_slug(heading) == slug


def test_repeated_headings_are_numbered_and_code_is_not_a_heading() -> None:
    text = "# Top\n## Notes\n```sh\n# not a heading\n```\n## Notes\nSetext\n======\n"
    assert anchors(text) == {"top", "notes", "notes-1", "setext"}


# Fixtures write `DOCS/` for `docs/`, so that this file mentions no missing doc itself.
def _d(text: str) -> str:
    return text.replace("DOCS/", "docs/")


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / _d(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_d(text))
    return root


def test_broken_links_are_reported(tmp_path: Path) -> None:
    root = _tree(
        tmp_path / "repo",
        {
            "README.md": (
                "[ok](DOCS/a.md) [ok too](DOCS/a.md#a-heading) [web](https://example.com)\n"
                "[gone](DOCS/missing.md)\n"
                "[no heading](DOCS/a.md#nowhere)\n"
                "`[in code](DOCS/missing.md)`\n"
                "```\n[in a block](DOCS/missing.md)\n```\n"
                "[escapes](../outside.md)\n"
                "[ref]: DOCS/also-missing.md\n"
            ),
            "DOCS/a.md": "# A heading\n[back](../README.md#nothing-here)\n[self](#a-heading)\n",
        },
    )
    (tmp_path / "outside.md").write_text("# Outside\n")
    assert broken_links(root) == [
        _d("README.md:2: DOCS/missing.md does not exist"),
        _d("README.md:3: DOCS/a.md#nowhere names no heading of that file"),
        "README.md:8: ../outside.md leads out of the repository",
        _d("README.md:9: DOCS/also-missing.md does not exist"),
        _d("DOCS/a.md:2: ../README.md#nothing-here names no heading of that file"),
    ]


def test_missing_docs_and_outside_mentions_are_reported(tmp_path: Path) -> None:
    outside = OUTSIDE_MENTIONS[0] + "/X.md"
    root = _tree(
        tmp_path,
        {
            "DOCS/here.md": "# Here\n",
            "pkg/mod.py": '"""See DOCS/here.md and DOCS/gone.md."""\n',
            "deploy/x.toml": f"# DOCS/here.md, /DOCS/route, https://h/DOCS/gone.md, {outside}\n",
            "run": "#!/usr/bin/env bash\n# DOCS/run-gone.md\n",
            "data.json": '{"DOCS/ignored.md": 1}\n',
        },
    )
    assert missing_docs(root) == [
        _d("run:2: DOCS/run-gone.md does not exist"),
        _d("pkg/mod.py:1: DOCS/gone.md does not exist"),
    ]
    assert outside_mentions(root) == [f"deploy/x.toml:1: mentions {OUTSIDE_MENTIONS[0]}"]
