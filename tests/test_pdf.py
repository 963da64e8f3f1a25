"""The book as a PDF (``rnnbook build --pdf``): a title page with version, commit, date and preset;
every figure and table number of the site; the bibliography; printed offline by Chromium.

The PDF's text is read with ``pdftotext`` (Debian's ``poppler-utils``). Without Chromium or
pdftotext the end-to-end test is skipped with how to install them; in CI (``CI`` set) it fails.
"""
from __future__ import annotations

import io
import os
import re
import shutil
import subprocess

import pytest

from rnnbook.book import pdf

from conftest import ROOT

TITLE = pdf.TitlePage(title="A <book>", authors="The authors", version="9.9.9", commit="abc1234 (dirty)",
                      date="2026-12-05 04:30 UTC", preset="quick, with overrides: seq_len",
                      base_url="https://example.org/book/")
PAGE = """<html><head><title>old</title></head><body>
<article class="bd-article">
<p><a class="reference internal" href="index.html#fig-x">Fig. 1</a> <a href="#tbl-y">Table 1</a>
<a class="rnnbook-data reference download" href="chapters/fig-x.csv" download="fig-x.csv">Data (CSV)</a>
<a href="https://doi.org/10.1/x">doi</a></p>
</article></body></html>"""


def test_the_print_page_has_a_title_page_and_absolute_or_no_links():
    page = pdf.print_html(PAGE, TITLE)
    assert "<title>A &lt;book&gt; (version 9.9.9)</title>" in page
    title = page[page.index('<section class="rnnbook-title-page">'):page.index("</section>")]
    for fact in ("A &lt;book&gt;", "The authors", "9.9.9", "abc1234 (dirty)", "2026-12-05 04:30 UTC",
                 "quick, with overrides: seq_len", "https://example.org/book/"):
        assert fact in title
    assert page.index('<article class="bd-article">') < page.index('<section class="rnnbook-title-page">') < page.index("Fig. 1")
    assert 'href="#fig-x"' in page and 'href="#tbl-y"' in page                    # links inside the PDF
    assert 'href="https://example.org/book/chapters/fig-x.csv"' in page              # a file of the site
    assert 'href="https://doi.org/10.1/x"' in page
    assert "@page" in page and "break-before: page" in page
    offline = pdf.print_html(PAGE, pdf.TitlePage(**{**TITLE.__dict__, "base_url": ""}))
    assert "chapters/fig-x.csv" not in offline and "Data (CSV)</a>" in offline      # plain text
    assert "Online" not in offline


def test_the_site_is_told_where_its_pdf_is():
    import yaml

    config = yaml.safe_load(pdf.config_with_pdf(b"title: x\nsphinx:\n  config:\n    numfig: true\n"))
    assert config["sphinx"]["config"] == {"numfig": True, "rnnbook_pdf": pdf.pdf_name()}
    import rnnbook

    assert pdf.pdf_name() == f"rnnbook-{rnnbook.__version__}.pdf"


def test_without_chromium_the_build_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setenv(pdf.CHROMIUM_ENV, str(tmp_path / "no-such-browser"))
    assert pdf.find_chromium() is None
    with pytest.raises(pdf.PdfError, match="apt-get install -y chromium"):
        pdf.build_pdf(ROOT, tmp_path / "_build", "quick")


def test_pdf_without_html_is_refused_before_anything_runs(toy_book, capsys):
    from rnnbook.book import cli

    assert cli.main(["build", "--root", str(toy_book), "--pdf", "--no-html"]) == 2
    assert "--pdf" in capsys.readouterr().err
    assert not (toy_book / "_build").exists()


def _unavailable(reason: str):
    hint = ("install them: `sudo apt-get install -y chromium poppler-utils` (Debian/Ubuntu), or set "
            f"{pdf.CHROMIUM_ENV} to a Chromium binary")
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI never skips the PDF test): {hint}")
    pytest.skip(f"{reason}: {hint}")


def _figure_numbers(html: str) -> list[str]:
    """The numbers of the figures and tables a page shows, e.g. ["Fig. 1", "Table 1"]."""
    return [" ".join(n.split()) for n in re.findall(r'<span class="caption-number">([^<]+?)\s*</span>', html)]


@pytest.mark.slow
def test_rnnbook_build_pdf_prints_the_whole_book(quick_book, tmp_path):
    """``--pdf`` on the quick build (its chapters from the cache): the PDF has the title page, the
    commit, every figure and table number of the site, the bibliography, typeset math; the cite
    page links it and it sits beside the site."""
    from rnnbook.book import build, provenance

    if pdf.find_chromium() is None:
        _unavailable("no Chromium found")
    if shutil.which("pdftotext") is None:
        _unavailable("no pdftotext found")
    assert quick_book.code == 0, quick_book.output
    build_dir = tmp_path / "_build"
    shutil.copytree(quick_book.build_dir / "executed", build_dir / "executed")
    out = io.StringIO()
    code = build.build(build.Options(root=ROOT, preset="quick", progress=False, build_dir=build_dir, pdf=True),
                       out=out)
    assert code == 0, out.getvalue()
    path = build_dir / "pdf" / pdf.pdf_name()
    assert path.is_file() and f"PDF: {path}" in out.getvalue()
    assert re.search(r"PDF \(chromium\)\s+\d", out.getvalue()), out.getvalue()
    assert (build_dir / "html" / path.name).read_bytes() == path.read_bytes()
    cite = (build_dir / "html" / "chapters" / "cite.html").read_text()
    assert f'href="../{path.name}"' in cite

    text = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True,
                          check=True).stdout
    flat = " ".join(text.split())
    first_page = " ".join(text.split("\f")[0].split())
    import yaml

    title = yaml.safe_load((ROOT / "_config.yml").read_text())["title"]
    assert title in first_page
    commit = provenance.git_state(str(ROOT)).split()[0]
    import rnnbook

    assert commit in first_page and "Preset quick" in first_page and f"Version {rnnbook.__version__}" in first_page
    site = [n for d in build.toc_docnames(build_dir / "src")
            for n in _figure_numbers((build_dir / "html" / f"{d}.html").read_text())]
    assert len(site) > 20, site
    missing = [n for n in site if n not in flat]
    assert not missing, f"figure and table numbers of the site missing from the PDF: {missing}"
    assert "Bibliography" in flat and "Pascanu" in flat
    assert "\\(" not in flat and "\\[" not in flat, "math left untypeset"
    pages = int(re.search(r"Pages:\s+(\d+)", subprocess.run(["pdfinfo", str(path)], capture_output=True,
                                                             text=True).stdout)[1])
    assert pages > 10 and len(text.split("\f")) - 1 == pages
