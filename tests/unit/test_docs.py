"""The documentation stands alone (docs/README.md): no reference outside the repository, every
cited page and anchor exists, the key terms are explained, relative links resolve, and every
worker command names its node."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
TRACKED_ROOTS = ("soakq", "workers", "tests", "docs", "ops", "README.md", "compose.yaml")
# Spelled in pieces so this file does not match itself.
FORBIDDEN = ("../" + "shared", "DESI" + "GN §")
TERMS = ("SOAK_ITERATION", "KPI_REPORT", "runtime_overrides", "INCONCLUSIVE", "min_fills")

CITED_PAGE = re.compile(r"\bdocs/([A-Za-z0-9_.-]+\.md)(#[A-Za-z0-9_-]+)?")
MD_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.M | re.S)
WORKER_CMD = re.compile(r"(celery\s+-A\s+workers\.app\s+worker|soakq\s+worker)\b(.*)")
NODE_NAME = re.compile(r"(?:^|\s)(?:-n|--name|--hostname)[ =](\S+)")


def tracked_files() -> list[Path]:
    """The files git tracks under the checked roots (all files there when git is absent)."""
    git = shutil.which("git")
    if git is not None and (REPO / ".git").exists():
        out = subprocess.run(
            [git, "ls-files", "-z", "--", *TRACKED_ROOTS],
            cwd=REPO,
            capture_output=True,
            check=True,
        ).stdout.decode()
        return [REPO / name for name in out.split("\0") if name]
    found: list[Path] = []
    for root in TRACKED_ROOTS:
        path = REPO / root
        found.extend([path] if path.is_file() else (p for p in path.rglob("*") if p.is_file()))
    return found


def text_of(path: Path) -> str | None:
    try:
        return path.read_text("utf-8")
    except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
        return None


def markdown_files() -> list[Path]:
    return [REPO / "README.md", *sorted(DOCS.glob("*.md"))]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[^\w\s-]", "", heading.strip().lower())
    return re.sub(r"\s", "-", text)


def anchors(page: Path) -> set[str]:
    body = FENCE.sub("", page.read_text("utf-8"))
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*$", body, re.M)}


def test_slug_matches_github() -> None:
    assert slug("On a run: `soakq gate RUN_DIR` and `RELEASE_GATE.json`") == (
        "on-a-run-soakq-gate-run_dir-and-release_gatejson"
    )
    assert slug("Precedence of the layers, and `_sources`") == (
        "precedence-of-the-layers-and-_sources"
    )


def test_no_reference_outside_the_repository() -> None:
    bad = []
    for path in tracked_files():
        text = text_of(path)
        if text is None:
            continue
        for needle in FORBIDDEN:
            for n, line in enumerate(text.splitlines(), start=1):
                if needle in line:
                    bad.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert not bad, "\n".join(bad)


def test_every_cited_page_and_anchor_exists() -> None:
    bad = []
    for path in tracked_files():
        text = text_of(path)
        if text is None:
            continue
        for m in CITED_PAGE.finditer(text):
            page = DOCS / m.group(1)
            where = f"{path.relative_to(REPO)}: {m.group(0)}"
            if not page.is_file():
                bad.append(f"{where}: no such page")
            elif m.group(2) and m.group(2)[1:] not in anchors(page):
                bad.append(f"{where}: no such heading")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("term", TERMS)
def test_docs_explain_the_key_terms(term: str) -> None:
    pages = [p.name for p in sorted(DOCS.glob("*.md")) if term in p.read_text("utf-8")]
    assert pages, f"no page under docs/ mentions {term}"


def test_relative_links_resolve() -> None:
    bad = []
    for page in markdown_files():
        body = FENCE.sub("", page.read_text("utf-8"))
        for m in MD_LINK.finditer(body):
            target = m.group(1)
            if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                if target.startswith("#") and target[1:] not in anchors(page):
                    bad.append(f"{page.name}: {target}: no such heading")
                continue
            file_part, _, anchor = target.partition("#")
            dest = (page.parent / file_part).resolve()
            if not dest.exists():
                bad.append(f"{page.relative_to(REPO)}: {target}: no such file")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                bad.append(f"{page.relative_to(REPO)}: {target}: no such heading")
    assert not bad, "\n".join(bad)


def test_worker_commands_in_examples_name_their_node() -> None:
    """Every worker started in a code block has ``-n NAME``, and no two in one block share it."""
    bad = []
    pages = [*markdown_files(), *sorted((REPO / "ops").glob("*.md"))]
    for page in pages:
        for block in FENCE.findall(page.read_text("utf-8")):
            names: list[str] = []
            for line in block.splitlines():
                command = line.split("#", 1)[0]
                m = WORKER_CMD.search(command)
                if m is None:
                    continue
                node = NODE_NAME.search(m.group(2))
                if node is None:
                    bad.append(f"{page.relative_to(REPO)}: {line.strip()}: no -n NAME")
                else:
                    names.append(node.group(1))
            if len(names) != len(set(names)):
                bad.append(f"{page.relative_to(REPO)}: node names repeat in one block: {names}")
    assert not bad, "\n".join(bad)
