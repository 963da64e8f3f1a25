"""How to cite the book, derived from ``CITATION.cff`` (the one place its metadata is typed).

- :func:`bibtex` turns ``CITATION.cff`` into BibTeX, a few lines of its own (the cite page shows it
  through the ``cff-bibtex`` directive of :mod:`rnnbook.book.site`; ``pybtex`` reads it back in
  the tests);
- :func:`figure_reference` is the one-line "cite this figure" text under every figure::

      >>> figure_reference("fig-accuracy-vs-lag", "chapters/relu", commit="abc1234",
      ...                  cff={"title": "A book", "version": "0.1.0",
      ...                       "authors": [{"name": "The authors"}]})
      'The authors. A book, version 0.1.0, chapters/relu.html#fig-accuracy-vs-lag (commit abc1234).'
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

#: The BibTeX key of the book.
BIBTEX_KEY = "rnnbook"


class CitationError(ValueError):
    """``CITATION.cff`` is missing or lacks what a citation needs."""


def load_cff(path: str | Path) -> dict[str, Any]:
    """``CITATION.cff`` as a dict; raises :class:`CitationError` if missing or without a title."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise CitationError(f"no citation file at {path} (expected CITATION.cff at the book's root)")
    cff = yaml.safe_load(path.read_text()) or {}
    if not isinstance(cff, dict) or not cff.get("title"):
        raise CitationError(f"{path} has no 'title'; see https://citation-file-format.github.io/")
    return cff


def authors(cff: Mapping[str, Any]) -> str:
    """The authors as one string: entity ``name`` or ``given-names family-names``, joined by "and"."""
    names = []
    for a in cff.get("authors") or []:
        name = a.get("name") or " ".join(p for p in (a.get("given-names"), a.get("family-names")) if p)
        if name:
            names.append(name)
    return " and ".join(names) or "Anonymous"


#: BibTeX's month macros.
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_SPECIAL = re.compile(r"([&%$#_])")


def _field(text: Any) -> str:
    """A BibTeX field value: LaTeX's special characters escaped, one line."""
    return _SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def bibtex_name(author: Mapping[str, Any]) -> str:
    """One CFF author as a BibTeX name: ``{Entity name}`` (braced, so BibTeX does not split it
    into first and last names) or ``particle family, suffix, given``.

    >>> bibtex_name({"name": "The rnnbook authors"})
    '{The rnnbook authors}'
    >>> bibtex_name({"given-names": "Ludwig", "name-particle": "van", "family-names": "Beethoven"})
    'van Beethoven, Ludwig'
    """
    if author.get("name"):
        return "{" + _field(author["name"]) + "}"
    last = " ".join(str(author[k]) for k in ("name-particle", "family-names") if author.get(k))
    parts = [p for p in (last, author.get("name-suffix"), author.get("given-names")) if p]
    return _field(", ".join(map(str, parts)))


def bibtex(path: str | Path, key: str = BIBTEX_KEY) -> str:
    """``CITATION.cff`` as one BibTeX ``@misc`` entry with key ``key``: authors, title, version,
    year and month of ``date-released``, DOI and URL (``url``, else ``repository-code``)."""
    cff = load_cff(path)
    fields = [("author", " and ".join(bibtex_name(a) for a in cff.get("authors") or []) or None),
              ("title", _field(cff["title"]))]
    if cff.get("version") is not None:
        fields.append(("version", _field(cff["version"])))
    released = str(cff.get("date-released") or "")
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", released):
        fields += [("year", released[:4]), ("month", MONTHS[int(released[5:7]) - 1])]
    for name, field_ in (("doi", "doi"), ("url", "url"), ("url", "repository-code")):
        if cff.get(field_) and name not in dict(fields):
            fields.append((name, " ".join(str(cff[field_]).split())))  # verbatim: no escapes
    lines = [f"  {name} = {value}" if name == "month" else f"  {name} = {{{value}}}"
             for name, value in fields if value]
    return f"@misc{{{key},\n" + ",\n".join(lines) + "\n}\n"


def figure_reference(key: str, docname: str, *, commit: str, cff: Mapping[str, Any]) -> str:
    """One line to cite figure ``key`` of page ``docname`` (authors, title, version, anchor, commit)."""
    version = f", version {cff['version']}" if cff.get("version") else ""
    return f"{authors(cff)}. {cff['title']}{version}, {docname}.html#{key} (commit {commit})."
