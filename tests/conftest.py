"""Shared fixtures: the repository root and a tiny throw-away book."""
from __future__ import annotations

import io
import re
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FRONT = """\
---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
    format_version: 0.13
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---
"""


def chapter(title: str, parameters: str, body: str) -> str:
    """A MyST Markdown notebook with one parameters cell and one more code cell."""
    return (
        FRONT
        + f"\n# {title}\n\n```{{code-cell}} ipython3\n:tags: [parameters]\n\n{textwrap.dedent(parameters).strip()}\n```\n"
        + f"\nSome prose.\n\n```{{code-cell}} ipython3\n{textwrap.dedent(body).strip()}\n```\n"
    )


def glued(nb) -> dict[str, dict]:
    """Every value a notebook glued (myst-nb's scrapbook outputs): key -> mime bundle."""
    out = {}
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            sc = o.get("metadata", {}).get("scrapbook")
            if sc:
                out[sc["name"]] = o.get("data", {})
    return out


def referenced(nb) -> set[str]:
    """Every glue key the notebook's prose pastes (roles and directives)."""
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    keys = set(re.findall(r"\{glue(?::text|:md|:figure|)?\}`([^`:]+)", text))
    keys |= set(re.findall(r"```\{glue:(?:figure|md)\}\s+(\S+)", text))
    return keys


def assert_chapter_glue(nb, docname: str, anchors, forbid=("''", '""')) -> dict[str, dict]:
    """Each anchor is a glued figure or table, and every key the prose pastes was glued with a
    non-empty value (none of ``forbid``); returns the glued values."""
    values = glued(nb)
    for anchor in anchors:
        data = values.get(anchor)
        assert data, f"{docname}: {anchor} is not glued"
        assert any(k.endswith(("image/png", "text/html")) and v for k, v in data.items()), \
            f"{docname}: {anchor} has no figure or table"
    keys = referenced(nb)
    missing = keys - set(values)
    assert not missing, f"{docname}: the prose refers to values never glued: {sorted(missing)}"
    for key in keys:
        text = "".join(str(v) for k, v in values[key].items()
                       if k.endswith(("text/plain", "text/markdown", "text/html", "image/png")))
        assert text.strip() and text.strip() not in forbid, f"{docname}: {key} is empty ({text[:40]!r})"
    assert sum(1 for c in nb.cells if "parameters" in c.metadata.get("tags", [])) == 1
    return values


@pytest.fixture
def repo_root() -> Path:
    return ROOT


@pytest.fixture
def toy_book(tmp_path: Path) -> Path:
    """A two-chapter book that needs no TensorFlow: ``ok`` runs, ``boom`` raises."""
    root = tmp_path / "book"
    (root / "chapters").mkdir(parents=True)
    (root / "presets").mkdir()
    (root / "_config.yml").write_text(
        "title: toy\nonly_build_toc_files: true\nexclude_patterns: [_build, presets]\n"
        "execute:\n  execute_notebooks: force\n"
    )
    (root / "_toc.yml").write_text(
        "format: jb-book\nroot: index\nchapters:\n  - file: chapters/ok\n  - file: chapters/boom\n"
    )
    (root / "index.md").write_text("# Toy\n\nA toy book.\n")
    (root / "presets" / "default.yaml").write_text("{}\n")
    (root / "presets" / "quick.yaml").write_text("seed: 1\nseq_len: 2\n")
    (root / "chapters" / "ok.md").write_text(chapter("OK", "seed = 0", "print('ok', seed)"))
    (root / "chapters" / "boom.md").write_text(
        chapter("Boom", "seq_len = 3", "x = 1\nraise ValueError(f'boom at {seq_len}')")
    )
    return root


@dataclass
class QuickBook:
    """The whole book built once per test session with the ``quick`` preset."""

    root: Path
    build_dir: Path
    code: int
    output: str
    seconds: float
    src_digest: str  # of src/rnnbook when the build started

    @property
    def html_dir(self) -> Path:
        return self.build_dir / "html"

    def page(self, docname: str) -> str:
        """The HTML of one page, e.g. ``page("chapters/relu")``."""
        return (self.html_dir / f"{docname}.html").read_text()

    def notebooks(self, docnames) -> dict:
        """The executed notebooks of ``docnames``; fails if the build failed or one is not in the book."""
        from rnnbook.book import build

        assert self.code == 0, self.output
        missing = set(docnames) - {c.docname for c in build.find_chapters(self.root)}
        assert not missing, f"chapters not in _toc.yml: {sorted(missing)}"
        return {d: self.notebook(d) for d in docnames}

    def notebook(self, docname: str):
        """The executed notebook of one chapter (from the build's cache)."""
        import nbformat

        from rnnbook.book import build

        chapters = build.find_chapters(self.root)
        resolved = build.resolve_parameters(self.root, chapters, "quick", (), [])
        job = next(j for j in build.plan(self.root, chapters, resolved) if j.chapter.docname == docname)
        from rnnbook.book.chapter_cache import ChapterCache

        return nbformat.read(ChapterCache(self.build_dir / "executed").get(docname, job.key), as_version=4)


@pytest.fixture(scope="session")
def quick_book(tmp_path_factory) -> QuickBook:
    """Build the real book with the ``quick`` preset (strict) once; every test that
    checks chapters reads this build instead of executing them again."""
    from rnnbook.book import build
    from rnnbook.book.build import Options
    from rnnbook.book.chapter_cache import src_digest

    digest = src_digest()
    build_dir = tmp_path_factory.mktemp("quick") / "_build"
    out = io.StringIO()
    t0 = time.time()
    code = build.build(Options(root=ROOT, progress=False, preset="quick", build_dir=build_dir), out=out)
    return QuickBook(ROOT, build_dir, code, out.getvalue(), time.time() - t0, digest)
