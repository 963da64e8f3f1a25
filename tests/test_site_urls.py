"""Permanent addresses: one setting, ``html.baseurl`` in ``_config.yml`` (``RNNBOOK_BASE_URL``
overrides it), makes the canonical and OpenGraph URLs and every "Cite this figure" line absolute;
the pages carry the repository and issue buttons."""
from __future__ import annotations

import re

import pytest
import yaml

from rnnbook.book import site
from rnnbook.book.figures import DOC_TOKEN

from conftest import ROOT

CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
BASE = site.base_url(CONFIG["html"]["baseurl"], environ={})


def test_one_setting_with_an_environment_override():
    assert BASE.startswith("https://") and BASE.endswith("/")
    assert site.base_url("https://x.org/book", environ={}) == "https://x.org/book/"
    assert site.base_url("https://x.org/book/", environ={site.BASE_URL_ENV: "https://y.org/b"}) == "https://y.org/b/"
    assert site.base_url("https://x.org/book/", environ={site.BASE_URL_ENV: ""}) == ""   # relative addresses
    assert site.base_url("", environ={}) == ""
    assert CONFIG["repository"]["url"].startswith("https://github.com/")
    assert CONFIG["html"]["use_repository_button"] is True and CONFIG["html"]["use_issues_button"] is True
    assert "ogp_site_url" not in CONFIG["sphinx"]["config"], "the base URL is the one setting"


class _Config(dict):
    __getattr__, __setattr__ = dict.__getitem__, dict.__setitem__


def test_the_sphinx_config_takes_the_base_url(monkeypatch):
    monkeypatch.setenv(site.BASE_URL_ENV, "https://mirror.example/rnnbook")
    config = _Config(html_baseurl="https://x.org/", ogp_site_url="", ogp_site_name="", ogp_image_alt="",
                     html_title="T", project="T")
    site.on_config_inited(None, config)
    assert config.html_baseurl == config.ogp_site_url == "https://mirror.example/rnnbook/"


def test_cite_lines_become_absolute():
    line = f"The authors. A book, version 1, {DOC_TOKEN}.html#fig-x (commit abc)."
    got = site.fill_tokens(site.absolute_cite(line, "https://x.org/b/"), "chapters/relu")
    assert got == "The authors. A book, version 1, https://x.org/b/chapters/relu.html#fig-x (commit abc)."
    assert site.fill_tokens(site.absolute_cite(line, ""), "chapters/relu").endswith(
        " chapters/relu.html#fig-x (commit abc).")


@pytest.mark.slow
def test_the_built_pages_have_absolute_addresses_and_the_repository_buttons(quick_book, monkeypatch):
    from rnnbook.book import build

    assert quick_book.code == 0, quick_book.output
    cites = 0
    for doc in build.toc_docnames(ROOT):
        page = quick_book.page(doc)
        assert f'<link rel="canonical" href="{BASE}{doc}.html" />' in page, doc
        assert f'<meta property="og:url" content="{BASE}{doc}.html" />' in page, doc
        assert re.search(rf'<meta property="og:image" content="{re.escape(BASE)}[^"]+\.png" />', page), doc
        assert CONFIG["repository"]["url"] in page, f"{doc}: no repository button"
        assert f'{CONFIG["repository"]["url"]}/issues' in page, f"{doc}: no issues button"
        for line in re.findall(r'<code class="rnnbook-cite">(.*?)</code>', page, flags=re.S):
            cites += 1
            assert f" {BASE}{doc}.html#fig-" in line, line
    assert cites >= 10
