"""``rnnbook build --pdf``: the whole book as one PDF, ``_build/pdf/rnnbook-<version>.pdf``.

1. Sphinx's ``singlehtml`` builder (through Jupyter Book, not strict: the site's build already
   is) turns the assembled book source (``_build/src``) into one page, ``_build/singlehtml``.
   It shares the site's doctrees, so every figure and table carries the number it has on the
   site; the bibliography is the book's last chapter.
2. :func:`print_html` makes a copy of that page for print: a title page (title, authors,
   version, commit, date, preset, the site's address), CSS for A4 paper with page numbers, one
   chapter per page, the code cells that the site shows collapsed left out, and links made
   absolute with the published base URL (or dropped without one: a PDF has no folder beside it).
3. Headless Chromium (Debian's ``chromium``, the browser the browser test uses; or the binary in
   ``RNNBOOK_CHROMIUM``) prints it. Nothing is downloaded: the page loads only the build's own
   files (MathJax from ``_static``), and Chromium's host resolver answers no host name. A virtual
   time budget lets MathJax typeset every formula before the page is printed.

``rnnbook build --pdf`` also copies the PDF beside the site's pages
(``_build/html/rnnbook-<version>.pdf``), where the cite page links it.
"""
from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rnnbook.book.files import pdf_name  # noqa: F401 - the PDF's file name

CHROMIUM_ENV = "RNNBOOK_CHROMIUM"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL_HINT = ("`rnnbook build --pdf` prints the book with Chromium: install it (`sudo apt-get install -y "
                f"chromium` on Debian/Ubuntu) or set {CHROMIUM_ENV} to a Chromium or Chrome binary")
PRINT_PAGE = "rnnbook-print.html"
#: Milliseconds of virtual time Chromium gives the page (MathJax) before printing it.
VIRTUAL_TIME_MS = 60_000
TIMEOUT_S = 600


class PdfError(RuntimeError):
    """The PDF cannot be made; the message says why."""


def find_chromium() -> str | None:
    """``RNNBOOK_CHROMIUM`` if it names a file, else the first Chromium or Chrome on the PATH."""
    given = os.environ.get(CHROMIUM_ENV)
    if given:
        return given if Path(given).is_file() else None
    return next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)


@dataclass
class TitlePage:
    title: str
    authors: str
    version: str
    commit: str
    date: str
    preset: str
    base_url: str = ""

    def html(self) -> str:
        e = html.escape
        rows = [("Version", e(self.version)), ("Commit", f"<code>{e(self.commit)}</code>"),
                ("Built", e(self.date)), ("Preset", e(self.preset))]
        if self.base_url:
            rows.append(("Online", f'<a href="{e(self.base_url)}">{e(self.base_url)}</a>'))
        facts = "\n".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows)
        return (f'<section class="rnnbook-title-page">\n<p class="rnnbook-title">{e(self.title)}</p>\n'
                f'<p class="rnnbook-authors">{e(self.authors)}</p>\n<dl class="rnnbook-facts">\n{facts}\n</dl>\n'
                '<p class="rnnbook-note">An executable research report: every number and figure in it was '
                "computed when this book was built, with the parameters of the preset above (each chapter "
                "ends with its provenance). Figures and tables carry the numbers they have on the site; "
                "the code behind them is on the site and in the repository.</p>\n</section>\n")


PRINT_CSS = """
@page { size: A4; margin: 16mm 15mm 18mm 15mm;
  @bottom-center { content: counter(page) " / " counter(pages); font: 9pt sans-serif; color: #555; } }
@page :first { @bottom-center { content: none; } }
html { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
.rnnbook-title-page { break-after: page; padding-top: 55mm; }
.rnnbook-title { font-size: 26pt; font-weight: 700; line-height: 1.2; margin-bottom: 6mm; }
.rnnbook-authors { font-size: 14pt; margin-bottom: 14mm; }
.rnnbook-facts { display: grid; grid-template-columns: 28mm auto; row-gap: 2mm; font-size: 11pt; }
.rnnbook-facts dt { font-weight: 700; } .rnnbook-facts dd { margin: 0; }
.rnnbook-note { margin-top: 18mm; font-size: 10pt; color: #444; max-width: 150mm; }
#jb-print-docs-body { break-after: page; }
span[id^="document-"] + section { break-before: page; }
.cell.tag_hide-input details.hide.above-input, .cell.tag_hide-input .cell_input,
.bd-header, .bd-header-article, .header-article, .bd-sidebar-primary, .bd-sidebar-secondary,
.bd-footer, .bd-footer-article, .bd-footer-content, .prev-next-area, #searchbox, a.headerlink,
button.copybtn, .toggle-button, .search-button-field { display: none !important; }
.bd-main .bd-content .bd-article-container { max-width: 100% !important; }
figure, table, img, .cell_output { break-inside: avoid; }
h1, h2, h3, h4 { break-after: avoid; }
"""

_A_HREF = re.compile(r'(<a\b[^>]*?\s)href="([^"]*)"')
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def _link(base_url: str):
    def repl(m: re.Match) -> str:
        head, href = m[1], html.unescape(m[2])
        if href.startswith("index.html#"):
            href = href[len("index.html"):]
        if href.startswith("#") or _SCHEME.match(href):
            return f'{head}href="{html.escape(href)}"'
        if base_url and not href.startswith("/"):  # a file of the site, relative to its root
            return f'{head}href="{html.escape(base_url + href)}"'
        return head.rstrip() + " "  # no address outside the PDF: plain text
    return repl


def print_html(page: str, title: TitlePage) -> str:
    """The singlehtml ``page`` ready to print: title page, print CSS, absolute or no links."""
    page = _A_HREF.sub(_link(title.base_url), page)
    page = re.sub(r"<title>.*?</title>", f"<title>{html.escape(title.title)} (version "
                  f"{html.escape(title.version)})</title>", page, count=1, flags=re.S)
    page = page.replace("</head>", f"<style>{PRINT_CSS}</style>\n</head>", 1)
    # before the theme's printed table of contents, else at the start of the article or the body
    toc = page.find('<div id="jb-print-docs-body"')
    if toc >= 0:
        return page[:toc] + title.html() + page[toc:]
    anchor = re.search(r'<article class="bd-article"[^>]*>', page) or re.search(r"<body[^>]*>", page)
    if anchor is None:
        raise PdfError("the single-page book has no <body> to put the title page in")
    return page[:anchor.end()] + "\n" + title.html() + page[anchor.end():]


def build_singlehtml(tree: Path, build_dir: Path, verbose: bool = False) -> Path:
    """Build ``tree`` (the assembled book source) with the singlehtml builder; return its index."""
    cmd = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()", "build", str(tree),
           "--path-output", str(build_dir.parent), "--builder", "singlehtml"]
    if not verbose:
        cmd.append("--quiet")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(cmd, env=env, capture_output=not verbose, text=True)
    index = build_dir / "singlehtml" / "index.html"
    if done.returncode != 0 or not index.is_file():
        raise PdfError(f"the single-page build for the PDF failed (exit {done.returncode}):\n"
                       f"{(done.stderr or '')[-3000:]}")
    return index


def chromium_print(chromium: str, page: Path, pdf: Path, timeout: float = TIMEOUT_S) -> None:
    """Print ``page`` (a local HTML file) to ``pdf`` with headless Chromium, offline."""
    pdf.parent.mkdir(parents=True, exist_ok=True)
    tmp = pdf.with_suffix(".pdf.tmp")
    tmp.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="rnnbook-chromium-") as profile:
        cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               f"--user-data-dir={profile}", "--no-first-run", "--disable-extensions", "--disable-sync",
               "--disable-background-networking", "--disable-component-update", "--mute-audio",
               "--host-resolver-rules=MAP * ~NOTFOUND", "--no-pdf-header-footer",
               "--generate-pdf-document-outline", f"--virtual-time-budget={VIRTUAL_TIME_MS}",
               f"--print-to-pdf={tmp}", page.resolve().as_uri()]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise PdfError(f"Chromium did not print {page} within {timeout:.0f} s") from None
    if done.returncode != 0 or not tmp.is_file() or tmp.stat().st_size == 0:
        raise PdfError(f"Chromium could not print {page} (exit {done.returncode}):\n{done.stderr[-2000:]}")
    tmp.replace(pdf)


def title_page(root: Path, tree: Path, preset: str, commit: str | None = None) -> TitlePage:
    """The facts of the title page: the book's title (``_config.yml``), the authors (``CITATION.cff``),
    the version of the package, the commit, now, ``preset`` and the published base URL."""
    import datetime as _dt

    import yaml

    import rnnbook
    from rnnbook.book import citation, provenance, site

    config = yaml.safe_load((tree / "_config.yml").read_text()) or {}
    try:
        authors = citation.authors(citation.load_cff(root / "CITATION.cff"))
    except citation.CitationError:
        authors = config.get("author") or ""
    return TitlePage(
        title=str(config.get("title") or "rnnbook"), authors=authors, version=rnnbook.__version__,
        commit=commit or provenance.git_state(str(root)),
        date=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), preset=preset,
        base_url=site.base_url((config.get("html") or {}).get("baseurl")))


def config_with_pdf(config: bytes, name: str | None = None) -> bytes:
    """The assembled book's ``_config.yml`` telling the site (the cite page) that the PDF ``name``
    (default: :func:`pdf_name`) is beside its pages."""
    import yaml

    data = yaml.safe_load(config) or {}
    data.setdefault("sphinx", {}).setdefault("config", {})["rnnbook_pdf"] = name or pdf_name()
    return yaml.safe_dump(data, sort_keys=False).encode()


def build_pdf(root: Path, build_dir: Path, preset: str, verbose: bool = False) -> Path:
    """Make ``<build_dir>/pdf/rnnbook-<version>.pdf`` from the assembled source ``<build_dir>/src``
    (built as a site first) and copy it beside the site's pages; return its path."""
    chromium = find_chromium()
    if chromium is None:
        raise PdfError(f"no Chromium found: {INSTALL_HINT}")
    tree = build_dir / "src"
    index = build_singlehtml(tree, build_dir, verbose=verbose)
    info = title_page(root, tree, preset)
    page = index.with_name(PRINT_PAGE)
    page.write_text(print_html(index.read_text(), info))
    pdf = build_dir / "pdf" / pdf_name(info.version)
    chromium_print(chromium, page, pdf)
    site_dir = build_dir / "html"
    if site_dir.is_dir():
        shutil.copyfile(pdf, site_dir / pdf.name)
    return pdf


def after_html(root: Path, build_dir: Path, resolved, report: list, verbose: bool = False) -> Path:
    """``rnnbook build --pdf``, once the site is built: make the PDF and add its row (time) to the
    build's ``report``; a failure is a :class:`rnnbook.book.build.BuildError`."""
    from rnnbook.book.errors import BuildError
    from rnnbook.book.provenance import OVERRIDES_ENV, PRESET_ENV, preset_label

    label = preset_label({PRESET_ENV: resolved.preset, OVERRIDES_ENV: ", ".join(sorted(resolved.overridden))})
    start = time.time()
    try:
        path = build_pdf(root, build_dir, label, verbose=verbose)
    except PdfError as exc:
        report.append(("PDF (chromium)", "FAILED", time.time() - start))
        raise BuildError(str(exc)) from None
    report.append(("PDF (chromium)", "built", time.time() - start))
    return path
