"""The book can be cited: CITATION.cff is valid and the "how to cite" page exists."""
import shutil
import subprocess

import pytest

from conftest import ROOT


@pytest.mark.skipif(shutil.which("cffconvert") is None, reason="cffconvert is not installed")
def test_citation_cff_is_valid():
    result = subprocess.run(["cffconvert", "--validate", "-i", str(ROOT / "CITATION.cff")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_cite_page_is_in_the_book():
    toc = (ROOT / "_toc.yml").read_text()
    assert "chapters/cite" in toc and "chapters/bibliography" in toc
    text = (ROOT / "chapters" / "cite.md").read_text()
    assert "CITATION.cff" in text or "cite" in text.lower()


def test_cite_page_names_anchors_that_exist():
    import re

    text = (ROOT / "chapters" / "cite.md").read_text()
    links = re.findall(r"`(chapters/\w+)\.html#([\w-]+)`", text)
    assert links, "the cite page shows how to link to a figure"
    for page, anchor in links:
        source = (ROOT / f"{page}.md").read_text()
        assert f":name: {anchor}\n" in source, f"{page} has no anchor {anchor}"
