"""The built site in a real browser: headless Chromium (Debian's ``chromium`` package) driven by
Playwright for Python, on the quick build served from a local HTTP server.

For every page of the book: it loads with no console error and no request to another host,
every image has a non-zero natural width and alt text, figures are not shrunk below half their
size at the content width, math is typeset (MathJax from ``_static``), every internal link and
anchor resolves, every "Data" link downloads a CSV with a header and a row, and a screenshot is
saved under ``_build/screenshots/``. Every figure's caption has a "Data" link. The search page
finds a word from a chapter. The pages are those of the built book's table of contents, so a
build with other parameters than the defaults (the quick one) includes the page "Compared with the
default book". On every trained chapter, the code of a figure is collapsed and one click shows it.

Without Chromium the tests are skipped with how to install it (``apt-get install -y chromium``;
``.ci/run`` does it); in CI (``CI`` set) they fail instead. ``RNNBOOK_SITE=_build/html`` checks an
existing build instead of building the quick one.
"""
from __future__ import annotations

import csv
import functools
import http.server
import io
import os
import re
import shutil
import threading
from pathlib import Path
from urllib.parse import urldefrag, urlparse

import pytest

from conftest import ROOT

SCREENSHOTS = ROOT / "_build" / "screenshots"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL_HINT = ("the browser test needs Chromium and Playwright: `sudo apt-get install -y chromium` "
                "(Debian/Ubuntu) and `pip install -r requirements-all.txt`; or point RNNBOOK_CHROMIUM at a "
                "Chromium binary. .ci/run installs both.")
SEARCH_WORD = "orthogonal"  # in the chapters' prose
#: Smallest share of its natural width a figure may be shrunk to at the book's content width
#: (1280 px window): 10 pt text at 110 dpi then stays above 7.5 px.
MIN_FIGURE_SCALE = 0.5
TIMEOUT_MS = 120_000  # generous: the tests share two cores with the book's build


def chromium_path() -> str | None:
    given = os.environ.get("RNNBOOK_CHROMIUM")
    if given:
        return given if Path(given).is_file() else None
    return next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)


def _unavailable(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI never skips the browser test): {INSTALL_HINT}")
    pytest.skip(f"{reason}: {INSTALL_HINT}")


@pytest.fixture(scope="module")
def site_dir(request) -> Path:
    given = os.environ.get("RNNBOOK_SITE")
    if given:
        return Path(given).resolve()
    book = request.getfixturevalue("quick_book")
    assert book.code == 0, book.output
    return book.html_dir


@pytest.fixture(scope="module")
def server(site_dir):
    """The site on http://127.0.0.1:<port>/ (a thread; stopped after the module)."""
    handler = functools.partial(_QuietHandler, directory=str(site_dir))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def browser():
    path = chromium_path()
    if path is None:
        _unavailable("no Chromium found")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright for Python is not installed")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


def book_pages(site_dir: Path) -> list[str]:
    """The HTML path of every page of the book, in reading order (from the ``_toc.yml`` the site
    was built from, ``_build/src``, which lists the comparison page of a non-default build)."""
    from rnnbook.book import build

    built = site_dir.parent / "src"
    pages = [f"{d}.html" for d in build.toc_docnames(built if (built / "_toc.yml").is_file() else ROOT)]
    missing = [p for p in pages if not (site_dir / p).is_file()]
    assert not missing, f"pages of _toc.yml missing from {site_dir}: {missing}"
    return pages


class _Fetcher:
    """Fetches same-origin URLs once (through the browser context) and remembers them."""

    def __init__(self, context):
        self.request, self.cache = context.request, {}

    def get(self, url: str):
        if url not in self.cache:
            r = self.request.get(url)
            self.cache[url] = (r.status, r.body())
        return self.cache[url]


def _has_anchor(html: bytes, fragment: str) -> bool:
    from urllib.parse import unquote

    frag = re.escape(unquote(fragment))
    return re.search(rf'\b(?:id|name)="{frag}"'.encode(), html) is not None


def check_page(context, fetch: _Fetcher, base: str, rel: str) -> list[str]:
    """Load one page and return every problem found on it (empty: the page is fine)."""
    problems: list[str] = []
    origin = urlparse(base).netloc
    page = context.new_page()
    page.on("console", lambda m: m.type == "error" and problems.append(f"console error: {m.text}"))
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("response", lambda r: r.status >= 400 and problems.append(f"status {r.status}: {r.url}"))
    page.on("request", lambda r: urlparse(r.url).scheme in ("http", "https", "ws", "wss")
            and urlparse(r.url).netloc != origin and problems.append(f"request to another host: {r.url}"))
    response = page.goto(base + rel, wait_until="networkidle")
    if response is None or response.status != 200:
        problems.append(f"status {None if response is None else response.status}")
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")  # lazy images load too
    page.wait_for_function("Array.from(document.images).every(i => i.complete)")
    for src, width, alt in page.eval_on_selector_all(
            "img", "els => els.map(e => [e.currentSrc || e.src, e.naturalWidth, e.getAttribute('alt') || ''])"):
        if not width:
            problems.append(f"image with no natural width: {src}")
        if not alt.strip():
            problems.append(f"image without alt text: {src}")
    if page.query_selector(".math") is not None:  # MathJax (served from _static) typeset it
        try:
            page.wait_for_selector("mjx-container", timeout=30_000)
        except Exception:
            problems.append("the page's math was not typeset (is MathJax in _static?)")
    for ident, scale in page.eval_on_selector_all(
            "figure img", "els => els.map(e => [e.closest('figure').id, e.clientWidth / (e.naturalWidth || 1)])"):
        if scale < MIN_FIGURE_SCALE:
            problems.append(f"figure #{ident} is shown at {scale:.0%} of its size at the content width: "
                            "its text is too small to read (make it narrower)")
    for href in set(page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")):
        url, fragment = urldefrag(href)
        if urlparse(url).netloc != origin:
            continue
        status, body = fetch.get(url)
        if status != 200:
            problems.append(f"broken link {href} (status {status})")
        elif fragment and url.endswith(".html") and not _has_anchor(body, fragment):
            problems.append(f"broken anchor {href}")
    for href in page.eval_on_selector_all("a.rnnbook-data", "els => els.map(e => e.href)"):
        status, body = fetch.get(href)
        rows = list(csv.reader(io.StringIO(body.decode("utf-8", "replace")))) if status == 200 else []
        if len(rows) < 2 or not all(rows[0]):
            problems.append(f"Data link {href} is not a CSV with a header and a row (status {status})")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / (rel.replace("/", "__").removesuffix(".html") + ".png")), full_page=True)
    page.close()
    return problems


@pytest.mark.parametrize("ci, outcome", [("", "Skipped"), ("true", "Failed")])
def test_without_chromium_a_reader_is_told_how_to_install_it(monkeypatch, ci, outcome):
    monkeypatch.setenv("CI", ci)
    with pytest.raises(BaseException) as raised:
        _unavailable("no Chromium found")
    assert type(raised.value).__name__ == outcome
    assert "apt-get install -y chromium" in str(raised.value)


def test_every_page_loads_cleanly_offline(browser, server, site_dir):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    fetch = _Fetcher(context)
    report = {rel: check_page(context, fetch, server, rel) for rel in book_pages(site_dir)}
    context.close()
    bad = {rel: problems for rel, problems in report.items() if problems}
    assert not bad, "\n".join(f"{rel}:\n  " + "\n  ".join(p) for rel, p in bad.items())
    assert len(list(SCREENSHOTS.glob("*.png"))) >= len(report)


def test_every_figure_and_table_links_its_data(browser, server, site_dir):
    """Each figure of a chapter (glued figures and tables alike: ``{glue:figure}``) has a "Data"
    link in its caption."""
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    missing = []
    for rel in book_pages(site_dir):
        page.goto(server + rel)
        for ident, has_link in page.eval_on_selector_all(
                "figure[id]", "els => els.map(e => [e.id, !!e.querySelector('figcaption a.rnnbook-data')])"):
            if not has_link:
                missing.append(f"{rel}#{ident}")
    context.close()
    assert not missing, f"figures and tables without a Data link: {missing}"


def test_search_finds_a_word_from_a_chapter(browser, server, site_dir):
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.goto(f"{server}search.html?q={SEARCH_WORD}", wait_until="networkidle")
    page.wait_for_selector("ul.search li a")
    found = page.eval_on_selector_all("ul.search li a", "els => els.map(e => e.getAttribute('href'))")
    context.close()
    assert any("chapters/" in (h or "") for h in found), found


#: The chapters that train models: each shows the code of its figures collapsed.
TRAINED_CHAPTERS = ("why_tanh", "gradients", "relu", "clipping", "reproductions")


def test_a_figures_code_is_collapsed_and_one_click_shows_it(browser, server, site_dir):
    """On every trained chapter the first figure's code cell (``hide-input``) shows a toggle, not
    its code; clicking the toggle shows the code that glues the figure."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    problems = []
    for chapter in TRAINED_CHAPTERS:
        page.goto(f"{server}chapters/{chapter}.html", wait_until="networkidle")
        cells = page.locator("div.cell.tag_hide-input").filter(has_text="glue_figure(")
        if cells.count() == 0:
            problems.append(f"{chapter}: no collapsed figure code (a hide-input cell calling glue_figure)")
            continue
        cell = cells.first
        code = cell.locator("div.cell_input")
        if code.is_visible():
            problems.append(f"{chapter}: the figure's code is shown before it is asked for")
        cell.locator("details.above-input > summary").click()
        code.wait_for(state="visible")
        if "glue_figure(" not in code.inner_text():
            problems.append(f"{chapter}: the expanded cell does not show the figure's code")
    context.close()
    assert not problems, "\n".join(problems)
