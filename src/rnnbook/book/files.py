"""Files a chapter publishes beside its page in the built site, through its executed notebook:
the glued payloads :mod:`rnnbook.book.site` writes out, and the page tokens filled in at build
time. Shared by :mod:`rnnbook.book.figures` and :mod:`rnnbook.book.provenance` (neither imports
the other for them)."""
from __future__ import annotations

#: The mime type of a file the Sphinx extension writes beside the page.
FILE_MIME = "application/vnd.rnnbook.file+json"
#: The mime type of a figure's alt text.
ALT_MIME = "application/vnd.rnnbook.alt+json"
#: Glue-key prefixes of those two.
FILE_PREFIX, ALT_PREFIX = "rnnbook-file:", "rnnbook-alt:"
#: Where the headline figure is published (site root), the pages' OpenGraph image.
HEADLINE_IMAGE = "/_static/rnnbook-headline.png"
#: Replaced at build time by the page's docname (``chapters/relu``) and its last part (``relu``).
DOC_TOKEN, PAGE_TOKEN = "RNNBOOKDOCNAME", "RNNBOOKPAGENAME"


class _Glued:
    """A value glued under a custom mime type (never displayed)."""

    def __init__(self, mime: str, payload: dict):
        self.mime, self.payload = mime, payload

    def _repr_mimebundle_(self, include=None, exclude=None):
        return {self.mime: self.payload, "text/plain": f"<{self.mime}>"}


def publish(name: str, content: str | bytes) -> None:
    """Write ``content`` as file ``name`` beside the page in the built site (via the notebook);
    a ``name`` starting with ``/`` is relative to the site's root instead."""
    import base64

    from myst_nb import glue

    payload = {"name": name, "text": content} if isinstance(content, str) else \
        {"name": name, "base64": base64.b64encode(content).decode()}
    glue(FILE_PREFIX + name, _Glued(FILE_MIME, payload), display=False)


def data_link(filename: str, label: str = "Data (CSV)", kind: str = "rnnbook-data") -> str:
    """Inline HTML of a download link to ``filename`` beside the page (class ``kind``)."""
    return f'<a class="{kind} reference download" href="{filename}" download="{filename}">{label}</a>'


def pdf_name(version: str | None = None) -> str:
    """``rnnbook-<version>.pdf``: the book's PDF (:mod:`rnnbook.book.pdf`), beside the site's pages."""
    if version is None:
        import rnnbook

        version = rnnbook.__version__
    return f"rnnbook-{version}.pdf"
