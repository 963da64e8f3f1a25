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
        assert f":name: {anchor}\n" in source or f"({anchor})=\n" in source, f"{page} has no anchor {anchor}"


def test_bibtex_is_generated_from_citation_cff(tmp_path):
    from rnnbook.book import citation

    import yaml

    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    text = citation.bibtex(ROOT / "CITATION.cff")
    assert text.startswith("@misc{rnnbook,")
    assert f"title = {{{cff['title']}}}" in text and f"version = {{{cff['version']}}}" in text
    assert "author = {{The rnnbook authors}}" in text  # an entity, not "authors, The rnnbook"
    changed = tmp_path / "CITATION.cff"
    changed.write_text((ROOT / "CITATION.cff").read_text().replace(cff["title"], "Another title"))
    assert "title = {Another title}" in citation.bibtex(changed)


def test_bibtex_needs_a_citation_file(tmp_path):
    from rnnbook.book import citation

    with pytest.raises(citation.CitationError, match="no citation file"):
        citation.bibtex(tmp_path / "CITATION.cff")


def test_cite_page_generates_its_bibtex_instead_of_typing_it():
    text = (ROOT / "chapters" / "cite.md").read_text()
    assert "```{cff-bibtex} ../CITATION.cff" in text
    assert "@software{" not in text and "@misc{" not in text


def test_figure_reference_names_title_version_anchor_and_commit():
    from rnnbook.book import citation

    cff = {"title": "A book", "version": "2.0", "authors": [{"given-names": "Ada", "family-names": "L"}]}
    line = citation.figure_reference("fig-x", "chapters/relu", commit="abc1234", cff=cff)
    assert line == "Ada L. A book, version 2.0, chapters/relu.html#fig-x (commit abc1234)."


def test_every_reference_has_a_year_or_says_why_not():
    import re

    entries = re.split(r"\n@", (ROOT / "references.bib").read_text())[1:]
    for entry in entries:
        key = entry.split("{", 1)[1].split(",", 1)[0]
        year = re.search(r"\byear\s*=\s*\{([^}]*)\}", entry)
        assert year, f"{key} has no year: the bibliography would print 'n.d.'"
        if not year.group(1).isdigit():
            assert "could not be found" in entry, f"{key}: say in its note why the year is missing"
    so = next(e for e in entries if "stackoverflow_tanh_default" in e)
    assert "Why do tensorflow and keras {SimpleRNN} layers have a default activation of tanh" in so
