"""Shared fixtures: the repository root and a tiny throw-away book."""
from __future__ import annotations

import html
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


def chapter_defaults(title: str) -> dict:
    """The defaults of a chapter's ``parameters`` cell (``title``: its file stem), as the build reads them."""
    from rnnbook.book import build

    return dict(next(c for c in build.find_chapters(ROOT) if c.title == title).defaults)


def quick_params(title: str) -> dict:
    """A chapter's parameters with the quick preset applied."""
    import yaml

    quick = yaml.safe_load((ROOT / "presets" / "quick.yaml").read_text())
    defaults = chapter_defaults(title)
    return {**defaults, **{k: v for k, v in quick.items() if k in defaults}}


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


#: The mime type each kind of glued value is read from, in this order: glue_md values carry
#: text/markdown, figures image/png, tables text/html, numbers and strings only text/plain.
GLUE_MIMES = ("text/markdown", "image/png", "text/html", "text/plain")

# An interval such as (0, +inf) or (-inf, +inf) is notation, not an undefined number.
_INTERVAL = re.compile(r"[(\[]\s*(?:[-+]?\d+(?:\.\d+)?|[-+]inf)\s*,\s*(?:[-+]?\d+(?:\.\d+)?|[-+]inf)\s*[)\]]")
# nan / inf as Python, NumPy and pandas print them, as a token: "(nan).", "nan%", "-inf"
_NON_FINITE = re.compile(r"(?<![A-Za-z0-9_\\])[-+]?(?:nan|inf|infinity)(?![A-Za-z0-9_])")
_NON_FINITE_ANY_CASE = re.compile(_NON_FINITE.pattern, re.I)
_WORD = re.compile(r"[A-Za-z]{2,}")


def non_finite_in_text(text: str) -> list[str]:
    """The printed NaN/Inf numbers in pasted text: lowercase tokens anywhere (how Python prints
    them), or a value that is nothing but NaN/Inf in any case; words like "NaN loss" in prose pass."""
    text = _INTERVAL.sub(" ", text)
    found = _NON_FINITE.findall(text)
    whole = text.strip().strip("'\"").strip()
    if _NON_FINITE_ANY_CASE.fullmatch(whole) and not found:
        found.append(whole)
    return found


def non_finite_cells(table_html: str) -> list[str]:
    """Table cells that show an undefined number: a NaN/Inf (any case, as pandas prints it) in a
    cell without other words (a label such as "one element is Inf" passes)."""
    bad = []
    for cell in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", table_html, flags=re.S | re.I):
        text = _INTERVAL.sub(" ", html.unescape(re.sub(r"<[^>]+>", " ", cell)))
        if _NON_FINITE_ANY_CASE.search(text) and not _WORD.findall(_NON_FINITE_ANY_CASE.sub(" ", text)):
            bad.append(text.strip())
    return bad


def glued_value(data: dict) -> tuple[str, str]:
    """``(mime, value)``: a glued value read from its own mime type (see :data:`GLUE_MIMES`)."""
    for mime in GLUE_MIMES:
        for k, v in data.items():
            if k.endswith(mime):
                return mime, "".join(v) if isinstance(v, list) else str(v)
    return "", ""


def glue_problem(data: dict, forbid=()) -> str | None:
    """Why a glued value would paste as nothing or as an undefined number; None if it is fine."""
    mime, value = glued_value(data)
    if not mime:
        return f"no {', '.join(GLUE_MIMES)} output"
    if mime == "image/png":
        return None if len(value.strip()) > 100 else "an empty image"
    if mime == "text/html":
        visible = html.unescape(re.sub(r"<[^>]+>", " ", value)).strip()
        if not visible:
            return "an empty table"
        cells = non_finite_cells(value)
        return f"table cells {cells[:5]} are NaN/Inf" if cells else None
    shown = re.sub(r"[\s*_`#>|~-]+", "", value) if mime == "text/markdown" else value.strip().strip("'\"")
    if not shown.strip() or value.strip() in forbid or shown in ("None",):
        return f"renders nothing ({mime} {value[:40]!r})"
    bad = non_finite_in_text(value)
    return f"pastes {bad} ({mime} {value[:60]!r})" if bad else None


def assert_chapter_glue(nb, docname: str, anchors, forbid=("''", '""')) -> dict[str, dict]:
    """Each anchor is a glued figure or table, and every key the prose pastes was glued with a
    value that renders something and holds no NaN/Inf, read from its own mime type (none of
    ``forbid`` either); returns the glued values."""
    values = glued(nb)
    for anchor in anchors:
        data = values.get(anchor)
        assert data, f"{docname}: {anchor} is not glued"
        assert glued_value(data)[0] in ("image/png", "text/html"), f"{docname}: {anchor} has no figure or table"
    keys = referenced(nb)
    missing = keys - set(values)
    assert not missing, f"{docname}: the prose refers to values never glued: {sorted(missing)}"
    problems = {key: glue_problem(values[key], forbid) for key in sorted(keys | set(anchors))}
    problems = {k: v for k, v in problems.items() if v}
    assert not problems, f"{docname}: glued values that paste badly: {problems}"
    assert sum(1 for c in nb.cells if "parameters" in c.metadata.get("tags", [])) == 1
    return values


def _page_text(page: str) -> str:
    body = page[page.find("<main"): page.find("</main>")]
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", body)))


#: A Python object's repr, as a page shows it when a value is pasted the wrong way.
_OBJECT_REPR = re.compile(r"<[\w.]+ object( at 0x[0-9a-f]+)?>")


def page_problems(page: str) -> list[str]:
    """What is wrong with the values a built HTML page shows, as myst-nb 1.4.0 writes them:
    {glue:text} values are ``<span class="pasted-text">``, glued tables sit in
    ``<div class="output text_html">``, {glue:md} and {glue} values are pasted without a
    wrapper (so the page's whole text is searched for printed NaN/Inf too)."""
    problems = []
    for value in re.findall(r'<span class="pasted-text">(.*?)</span>', page, flags=re.S):
        text = html.unescape(re.sub(r"<[^>]+>", "", value))
        if not text.strip():
            problems.append("an empty {glue:text} value")
        problems += [f"{{glue:text}} value {text!r} is NaN/Inf" for _ in non_finite_in_text(text)[:1]]
        if _OBJECT_REPR.search(text):  # a value glued as Markdown pasted with {glue:text}: its repr shows
            problems.append(f"{{glue:text}} value {text!r} is a Python object's repr (use {{glue:md}})")
    for table in re.findall(r"<table.*?</table>", page, flags=re.S):
        problems += [f"table cell {c!r}" for c in non_finite_cells(table)]
    for shown in re.findall(r'class="output text_plain[^"]*">(.{0,120})', page, flags=re.S):  # <pre> or <div>
        problems.append(f"a code cell prints a value on the page: {html.unescape(shown)!r}")  # values go through glue
    text = _INTERVAL.sub(" ", _page_text(page))
    for m in _NON_FINITE.finditer(text):
        problems.append(f"printed NaN/Inf: ...{text[max(0, m.start() - 50): m.end() + 20]}...")
    return problems


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
        """The executed notebook of one chapter, from the build's own cache: the one file of that
        chapter there (this build executed each chapter once). Not found by recomputing the key:
        the reference store may grow while the tests run, and its files are part of the key."""
        import nbformat

        from rnnbook.book.chapter_cache import ChapterCache

        slug = ChapterCache._slug(docname)
        found = sorted((self.build_dir / "executed").glob(f"{slug}-*.ipynb"), key=lambda p: p.stat().st_mtime)
        assert found, f"the quick build executed no {docname}"
        return nbformat.read(found[-1], as_version=4)


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
