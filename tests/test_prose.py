"""Every measured number and every verdict in the book's prose is pasted from the run (myst-nb
glue), never typed: a chapter's Markdown (outside code cells, glue roles and directives' options)
may not state a verdict word as a verdict or a count of runs ("3 of 4"). (Percentages stay
allowed: the prose states the confidence level of its intervals and the papers' criteria.)"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from rnnbook import verdicts

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "chapters").glob("*.md")) + [ROOT / "index.md"]
#: What prose may not type: a verdict word set in bold (the book's way of stating a verdict),
#: a count of runs or seeds.
VERDICT = re.compile(r"\*\*(" + "|".join(re.escape(w) for w in verdicts.VERDICTS) + r")\*\*", re.I)
COUNT = re.compile(r"\b\d+ (?:of|out of) \d+\b")
GLUE_ROLE = re.compile(r"\{glue:[a-z]+\}`[^`]*`")


def prose_lines(path: Path):
    """``(line number, text)`` of the Markdown prose: code cells, fenced blocks' bodies that are
    code, directive option lines and glue roles removed."""
    fence, code = None, False
    for i, line in enumerate(path.read_text().splitlines(), 1):
        stripped = line.strip()
        m = re.match(r"^(`{3,}|~{3,})(\{[^}]*\}|\w*)?", stripped)
        if m and fence is None:
            fence, kind = m.group(1), (m.group(2) or "")
            code = kind in ("{code-cell}", "", "python", "bash", "yaml", "text") or kind.startswith("{code")
            continue
        if fence is not None and stripped.startswith(fence) and stripped.strip("`~") == "":
            fence, code = None, False
            continue
        if code or stripped.startswith(":") or i <= 12 and path.name != "index.md" and stripped.startswith(("jupytext",)):
            continue
        yield i, GLUE_ROLE.sub("", line)


def test_the_prose_scanner_sees_through_glue_and_code(tmp_path):
    page = tmp_path / "x.md"
    page.write_text("Text {glue:text}`n` of {glue:text}`m`.\n```{code-cell} ipython3\nx = '3 of 4'\n```\n"
                    "Typed: 3 of 4 and **supported**.\n")
    bad = [t for _, t in prose_lines(page) if VERDICT.search(t) or COUNT.search(t)]
    assert bad == ["Typed: 3 of 4 and **supported**."]


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.name)
def test_no_verdict_or_count_typed_by_hand(path):
    bad = [f"{path.name}:{i}: {t.strip()}" for i, t in prose_lines(path)
           if VERDICT.search(t) or COUNT.search(t)]
    assert not bad, "typed outside a glue role:\n" + "\n".join(bad)
