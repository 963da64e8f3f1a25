"""How to cite the book, derived from ``CITATION.cff`` (the one place its metadata is typed).

- :func:`bibtex` turns ``CITATION.cff`` into BibTeX with ``cffconvert`` (the cite page shows it
  through the ``cff-bibtex`` directive of :mod:`rnnbook.book.site`);
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


def bibtex(path: str | Path, key: str = BIBTEX_KEY) -> str:
    """BibTeX of ``CITATION.cff`` made by ``cffconvert``, with two fixes for its known gaps:
    the entry gets ``key`` (cffconvert writes ``YourReferenceHere``), entity authors (``name:``)
    are braced so BibTeX does not split them into first and last names, and ``version`` is added
    (cffconvert leaves it out)."""
    from cffconvert import Citation

    path = Path(path)
    cff = load_cff(path)
    text = Citation(path.read_text()).as_bibtex(reference=key)
    entities = [a["name"] for a in cff.get("authors") or [] if a.get("name")]
    for name in entities:
        text = text.replace(f"author = {{{name}}}", f"author = {{{{{name}}}}}")
        text = text.replace(f"{name} and", f"{{{name}}} and").replace(f"and {name}}}", f"and {{{name}}}}}")
    if cff.get("version") and "version =" not in text:
        text = re.sub(r"\n}\s*$", f",\nversion = {{{cff['version']}}}\n}}\n", text)
    return text


def figure_reference(key: str, docname: str, *, commit: str, cff: Mapping[str, Any]) -> str:
    """One line to cite figure ``key`` of page ``docname`` (authors, title, version, anchor, commit)."""
    version = f", version {cff['version']}" if cff.get("version") else ""
    return f"{authors(cff)}. {cff['title']}{version}, {docname}.html#{key} (commit {commit})."
