"""The book can be cited: CITATION.cff is valid and states the package's version and license,
its BibTeX is generated, and the "how to cite" page exists."""
import datetime
import re

import pytest
import yaml

from conftest import ROOT

_STRING = {"type": "string", "minLength": 1}
_URL = {"type": "string", "pattern": "^(https|http|ftp|sftp)://.+"}
_DATE = {"type": "string", "pattern": "^[0-9]{4}-(0[1-9]|1[012])-(0[1-9]|[12][0-9]|3[01])$"}
_PERSON_KEYS = ("family-names", "given-names", "name-particle", "name-suffix", "affiliation", "alias",
                "address", "city", "country", "email", "fax", "orcid", "post-code", "region", "tel", "website")
_ENTITY_KEYS = ("name", "address", "alias", "city", "country", "date-end", "date-start", "email", "fax",
                "location", "orcid", "post-code", "region", "tel", "website")
_AUTHORS = {"type": "array", "minItems": 1, "uniqueItems": True, "items": {"anyOf": [
    {"type": "object", "additionalProperties": False, "properties": {k: _STRING for k in _PERSON_KEYS}},
    {"type": "object", "additionalProperties": False, "required": ["name"],
     "properties": {k: _STRING for k in _ENTITY_KEYS}},
]}}
#: The rules of the Citation File Format 1.2.0 (https://citation-file-format.github.io/) for the
#: top level of a CITATION.cff, written out here as a JSON schema (draft 7): the required keys,
#: no key outside the format, the patterns of its version, dates, DOIs and URLs, the types of a
#: work, and authors as persons or entities. ``references`` and ``preferred-citation`` are only
#: checked to be mappings.
CFF_1_2_0 = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "additionalProperties": False,
    "required": ["authors", "cff-version", "message", "title"],
    "properties": {
        "abstract": _STRING,
        "authors": _AUTHORS,
        "cff-version": {"type": "string", "pattern": r"^1\.2\.0$"},
        "commit": _STRING,
        "contact": _AUTHORS,
        "date-released": _DATE,
        "doi": {"type": "string", "pattern": r"^10\.\d{4,9}(\.\d+)?/[A-Za-z0-9:/_;\-\.\(\)\[\]\\]+$"},
        "identifiers": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["type", "value"], "additionalProperties": False,
            "properties": {"type": {"enum": ["doi", "url", "swh", "other"]}, "value": _STRING,
                           "description": _STRING}}},
        "keywords": {"type": "array", "minItems": 1, "uniqueItems": True, "items": _STRING},
        "license": {"anyOf": [{"type": "string", "pattern": r"^[A-Za-z0-9.+-]+$"},
                              {"type": "array", "minItems": 1, "uniqueItems": True,
                               "items": {"type": "string", "pattern": r"^[A-Za-z0-9.+-]+$"}}]},
        "license-url": _URL,
        "message": _STRING,
        "preferred-citation": {"type": "object"},
        "references": {"type": "array", "minItems": 1, "items": {"type": "object"}},
        "repository": _URL,
        "repository-artifact": _URL,
        "repository-code": _URL,
        "title": _STRING,
        "type": {"enum": ["dataset", "software"]},
        "url": _URL,
        "version": {"anyOf": [_STRING, {"type": "number"}]},
    },
}


def cff_errors(cff: dict) -> list[str]:
    """What is wrong with a parsed CITATION.cff, by :data:`CFF_1_2_0` (YAML dates compared as text,
    as the format says)."""
    import jsonschema

    def dates_as_text(value):
        if isinstance(value, dict):
            return {k: dates_as_text(v) for k, v in value.items()}
        if isinstance(value, list):
            return [dates_as_text(v) for v in value]
        return value.isoformat() if isinstance(value, datetime.date) else value

    validator = jsonschema.Draft7Validator(CFF_1_2_0)
    return [f"{'/'.join(map(str, e.path)) or '(top)'}: {e.message}" for e in validator.iter_errors(dates_as_text(cff))]


def citation() -> dict:
    return yaml.safe_load((ROOT / "CITATION.cff").read_text())


def test_citation_cff_is_valid():
    assert cff_errors(citation()) == []


@pytest.mark.parametrize("change, error", [
    (lambda c: c.pop("title"), "'title' is a required property"),
    (lambda c: c.update({"cff-version": "1.1.0"}), "cff-version: '1.1.0' does not match"),
    (lambda c: c.update({"date-released": "26 Nov 2026"}), "date-released: '26 Nov 2026' does not match"),
    (lambda c: c.update({"authors": []}), "authors: [] "),
    (lambda c: c.update({"authors": [{"email": "a@b.org", "names": "x"}]}), "authors/0:"),
    (lambda c: c.update({"titel": "typo"}), "Additional properties are not allowed ('titel'"),
    (lambda c: c.update({"type": "book"}), "type: 'book' is not one of"),
])
def test_the_validation_catches_a_broken_citation_file(change, error):
    cff = citation()
    change(cff)
    assert any(e.startswith(error) or error in e for e in cff_errors(cff)), cff_errors(cff)


def test_citation_states_the_package_version_and_license():
    import tomllib

    import rnnbook

    cff = citation()
    assert str(cff["version"]) == rnnbook.__version__, "CITATION.cff's version is not rnnbook.__version__"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == {"text": cff["license"]} == {"text": "MIT"}
    license_text = (ROOT / "LICENSE").read_text()
    assert license_text.startswith("MIT License\n") and "Copyright (c) " in license_text
    assert "the rnnbook authors" in license_text


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
    from pybtex.database import parse_string

    from rnnbook.book import citation as cite

    cff = citation()
    text = cite.bibtex(ROOT / "CITATION.cff")
    assert text.startswith("@misc{rnnbook,")
    assert f"title = {{{cff['title']}}}" in text and f"version = {{{cff['version']}}}" in text
    assert "author = {{The rnnbook authors}}" in text  # an entity, not "authors, The rnnbook"
    entry = parse_string(text, "bibtex").entries["rnnbook"]  # BibTeX that a BibTeX reader reads
    assert entry.type == "misc" and entry.fields["title"] == cff["title"]
    assert entry.fields["year"] == str(cff["date-released"])[:4]
    assert [str(p) for p in entry.persons["author"]] == ["{The rnnbook authors}"]
    changed = tmp_path / "CITATION.cff"
    changed.write_text((ROOT / "CITATION.cff").read_text().replace(cff["title"], "Another title"))
    assert "title = {Another title}" in cite.bibtex(changed)


def test_bibtex_of_persons_special_characters_and_links(tmp_path):
    from pybtex.database import parse_string

    from rnnbook.book import citation as cite

    path = tmp_path / "CITATION.cff"
    path.write_text(yaml.safe_dump({
        "cff-version": "1.2.0", "message": "Cite it.", "title": "Costs & 100% of RNN_s", "version": 2,
        "authors": [{"given-names": "Ada", "family-names": "Lovelace"},
                    {"given-names": "Ludwig", "name-particle": "van", "family-names": "Beethoven"}],
        "date-released": datetime.date(2027, 3, 9), "doi": "10.5281/zenodo.1003150",
        "repository-code": "https://example.org/a_b%20c",
    }))
    text = cite.bibtex(path)
    assert r"title = {Costs \& 100\% of RNN\_s}" in text
    assert "month = mar" in text and "year = {2027}" in text and "version = {2}" in text
    assert "url = {https://example.org/a_b%20c}" in text and "doi = {10.5281/zenodo.1003150}" in text
    entry = parse_string(text, "bibtex").entries["rnnbook"]
    assert [p.last_names for p in entry.persons["author"]] == [["Lovelace"], ["Beethoven"]]
    assert entry.persons["author"][1].prelast_names == ["van"]


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
