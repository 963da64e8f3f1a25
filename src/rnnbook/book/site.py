"""A small Sphinx extension (``sphinx.extra_extensions`` in ``_config.yml``) that publishes what
the chapters glue for readers, in every build (``rnnbook build`` and plain ``jupyter-book build``):

- the files a chapter published (:func:`rnnbook.book.figures.publish`: figure and table CSVs,
  the runs CSV, ``<page>.params.yaml``) are written beside the page, e.g.
  ``_build/html/chapters/fig-accuracy-vs-lag.csv``;
- the page tokens of :mod:`rnnbook.book.figures` are replaced by the page's docname;
- every figure image gets alt text: the glued one (``glue_figure(..., alt=)``), else the first
  sentence of the figure's caption;
- scripts that name another host (sphinx-thebe's CDN bundle; thebe is off) are left out, so
  that a page requests nothing but its own site;
- the ``cff-bibtex`` directive shows ``CITATION.cff`` as BibTeX (:func:`rnnbook.book.citation.bibtex`)
  and publishes it as ``rnnbook.bib`` beside the page::

      ```{cff-bibtex} ../CITATION.cff
      ```

- the published base URL (``html.baseurl`` in ``_config.yml``; the environment variable
  ``RNNBOOK_BASE_URL`` overrides it, and set empty it turns it off) makes the canonical and
  OpenGraph URLs and every "Cite this figure" address absolute;
- the ``rnnbook-pdf`` directive links the book's PDF (:mod:`rnnbook.book.pdf`): the copy beside
  the site when the build made one (``rnnbook build --pdf``), else the published one;
- in the single-page build the PDF is printed from, each part of the page keeps the addresses
  of the page it came from (tokens, links to published files).

The files travel in myst-nb's glue data (``<docname>.glue.json`` in its output folder).
"""
from __future__ import annotations

import base64
import json
import os
import posixpath
import re
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import Directive
from sphinx import addnodes

from rnnbook.book import citation
from rnnbook.book.files import ALT_MIME, ALT_PREFIX, DOC_TOKEN, FILE_MIME, FILE_PREFIX, PAGE_TOKEN

BIB_FILE = "rnnbook.bib"
#: Overrides ``html.baseurl`` of ``_config.yml`` (set empty: no base URL, relative addresses).
BASE_URL_ENV = "RNNBOOK_BASE_URL"


def base_url(configured: str | None, environ=None) -> str:
    """The address the book is published at, ending in ``/`` (``""``: none): ``RNNBOOK_BASE_URL``
    when it is set, else ``configured`` (``html.baseurl``)."""
    environ = os.environ if environ is None else environ
    url = str(environ.get(BASE_URL_ENV, configured or "")).strip()
    return url.rstrip("/") + "/" if url else ""


def absolute_cite(text: str, base: str) -> str:
    """``text`` with the page address of a "Cite this figure" line made absolute under ``base``."""
    return text.replace(f" {DOC_TOKEN}.html#", f" {base}{DOC_TOKEN}.html#") if base else text


def fill_tokens(text: str, docname: str) -> str:
    """``text`` with the page tokens replaced for ``docname`` (e.g. ``chapters/relu``)."""
    return text.replace(DOC_TOKEN, docname).replace(PAGE_TOKEN, posixpath.basename(docname))


def glue_data(app, docname: str) -> dict:
    """myst-nb's glue data of ``docname`` (empty if the page glued nothing)."""
    config = getattr(app.env, "mystnb_config", None)
    if config is None or not config.output_folder:
        return {}
    path = Path(config.output_folder).joinpath(*f"{docname}.glue.json".split("/"))
    return json.loads(path.read_text()) if path.is_file() else {}


def published_files(app, docname: str) -> dict[str, bytes]:
    """``{path relative to the site's root: content}`` of every file ``docname`` published."""
    out = {}
    for key, value in glue_data(app, docname).items():
        payload = value.get("data", {}).get(FILE_MIME)
        if key.startswith(FILE_PREFIX) and payload:
            name = fill_tokens(payload["name"], docname)
            rel = name[1:] if name.startswith("/") else posixpath.join(posixpath.dirname(docname), name)
            out[posixpath.normpath(rel)] = base64.b64decode(payload["base64"]) if "base64" in payload \
                else fill_tokens(payload["text"], docname).encode()
    return out


_ABBREVIATIONS = ("Fig.", "Figs.", "Eq.", "Eqs.", "e.g.", "i.e.", "al.", "cf.", "vs.", "Tab.")


def first_sentence(text: str) -> str:
    """The first sentence of ``text`` (not cut after "Fig." and the like), for alt text."""
    text = " ".join(text.split())
    for match in re.finditer(r"[.!?](?=\s+[A-Z(]|$)", text):
        head = text[:match.end()]
        if not head.endswith(_ABBREVIATIONS) and not re.search(r"\b[A-Z]\.$", head):
            return head
    return text


def _doc_of(node, default: str) -> str:
    """The page ``node`` came from: ``default``, except in the single-page build, where every
    page's part sits under a ``start_of_file`` node naming it."""
    while node is not None:
        if isinstance(node, addnodes.start_of_file):
            return node["docname"]
        node = node.parent
    return default


_RELATIVE_HREF = re.compile(r'(href=")(?![a-zA-Z][a-zA-Z0-9+.-]*:|#|/)([^"]+)(")')


def on_doctree_resolved(app, doctree, docname: str) -> None:
    """Fill the page tokens (cite lines absolute under the base URL), give every figure image an
    alt text, and, in the single-page build, make links to published files relative to its root."""
    base = app.config.html_baseurl
    for node in list(doctree.findall(nodes.Text)):
        text = str(node)
        if DOC_TOKEN in text or PAGE_TOKEN in text:
            node.parent.replace(node, nodes.Text(fill_tokens(absolute_cite(text, base), _doc_of(node, docname))))
    for node in doctree.findall(nodes.reference):
        if DOC_TOKEN in node.get("refuri", "") or PAGE_TOKEN in node.get("refuri", ""):
            node["refuri"] = fill_tokens(node["refuri"], _doc_of(node, docname))
    if app.builder.name == "singlehtml":
        for node in list(doctree.findall(nodes.raw)):
            doc = _doc_of(node, docname)
            if node.get("format") == "html" and "/" in doc and _RELATIVE_HREF.search(node.astext()):
                text = _RELATIVE_HREF.sub(lambda m: m[1] + posixpath.normpath(
                    posixpath.join(posixpath.dirname(doc), m[2])) + m[3], node.astext())
                node.replace_self(nodes.raw("", text, format="html"))
    alts: dict[str, dict] = {}
    for figure in doctree.findall(nodes.figure):
        doc = _doc_of(figure, docname)
        if doc not in alts:
            alts[doc] = {key[len(ALT_PREFIX):]: value["data"][ALT_MIME]["alt"]
                         for key, value in glue_data(app, doc).items()
                         if key.startswith(ALT_PREFIX) and ALT_MIME in value.get("data", {})}
        caption = next(iter(figure.findall(nodes.caption)), None)
        alt = next((alts[doc][i] for i in figure["ids"] if i in alts[doc]), None) or \
            (first_sentence(caption.astext()) if caption is not None else None)
        for image in figure.findall(nodes.image):
            if alt and not image.get("alt"):
                image["alt"] = alt


def on_build_finished(app, exception) -> None:
    """Write every published file (and the BibTeX of ``cff-bibtex``) into the HTML output."""
    if exception is not None or app.builder.format != "html":
        return
    outdir = Path(app.outdir)
    files: dict[str, bytes] = {}
    for docname in sorted(app.env.found_docs):
        files.update(published_files(app, docname))
    for docname, text in getattr(app.env, "rnnbook_bibtex", {}).items():
        files[posixpath.join(posixpath.dirname(docname), BIB_FILE)] = text.encode()
    for rel, content in files.items():
        path = outdir.joinpath(*rel.split("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.read_bytes() != content:
            path.write_bytes(content)


def on_config_inited(app, config) -> None:
    """OpenGraph defaults from the book's own settings: the site name is the book's title, and the
    published base URL (``html.baseurl``, or ``RNNBOOK_BASE_URL``: :func:`base_url`) makes the
    canonical and OpenGraph URLs absolute."""
    if "ogp_site_name" in config and not config.ogp_site_name:
        config.ogp_site_name = config.html_title or config.project
    if "ogp_image_alt" in config and not config.ogp_image_alt:
        config.ogp_image_alt = f"The headline figure of {config.html_title or config.project}"
    config.html_baseurl = base_url(config.html_baseurl)
    if "ogp_site_url" in config:
        config.ogp_site_url = config.html_baseurl


_OG_IMAGE = re.compile(r'(<meta property="og:image" content=")([^":]+)(")')
_OG_URL = re.compile(r'<meta property="og:url" content="[^":]*" />\n?')
#: A tiny inline icon, so that browsers do not ask the site for a missing /favicon.ico.
ICON = ("data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'%3E"
        "%3Cpath d='M1 13 C6 13 10 3 15 3' stroke='%230072B2' stroke-width='2.5' fill='none'/%3E%3C/svg%3E")


def _remote(script) -> bool:
    """A script that loads from, or names, another host (sphinx-thebe's unpkg.com bundle: the
    book has no live code, so thebe is never started)."""
    attributes = getattr(script, "attributes", {}) or {}
    text = f"{getattr(script, 'filename', '') or ''} {attributes.get('body', '')} {attributes.get('src', '')}"
    return "://" in text or "sphinx-thebe" in text


def on_html_page_context(app, pagename, templatename, context, doctree) -> None:
    """Pages that work offline: drop scripts that name other hosts, and give the page an inline
    icon. Without a site URL, sphinxext-opengraph writes og:url and og:image relative to the
    site's root: drop og:url (a relative page address means nothing to a link preview) and make
    og:image relative to the page so that it resolves."""
    if "script_files" in context:
        context["script_files"] = [s for s in context["script_files"] if not _remote(s)]
    tags = context.get("metatags", "")
    if "ogp_site_url" in app.config and not app.config.ogp_site_url:
        tags = _OG_IMAGE.sub(lambda m: m[1] + context["pathto"](m[2], 1) + m[3], _OG_URL.sub("", tags))
    if not context.get("favicon_url"):
        tags += f'\n<link rel="icon" href="{ICON}" />'
    context["metatags"] = tags


def on_env_purge_doc(app, env, docname: str) -> None:
    getattr(env, "rnnbook_bibtex", {}).pop(docname, None)


def on_env_merge_info(app, env, docnames, other) -> None:
    env.rnnbook_bibtex = {**getattr(env, "rnnbook_bibtex", {}), **getattr(other, "rnnbook_bibtex", {})}


class CffBibtex(Directive):
    """``{cff-bibtex} <path to CITATION.cff>``: the BibTeX of the citation file, as a code block
    followed by a download link to ``rnnbook.bib``."""

    required_arguments = 1

    def run(self):
        env = self.state.document.settings.env
        rel, path = env.relfn2path(self.arguments[0])
        env.note_dependency(rel)
        try:
            text = citation.bibtex(path)
        except citation.CitationError as exc:
            raise self.error(str(exc)) from None
        env.rnnbook_bibtex = {**getattr(env, "rnnbook_bibtex", {}), env.docname: text}
        block = nodes.literal_block(text, text, language="bibtex")
        link = nodes.raw("", f'<p><a class="reference download" href="{BIB_FILE}" download="{BIB_FILE}">'
                             f"Download {BIB_FILE}</a></p>", format="html")
        return [block, link]


class PdfLink(Directive):
    """``{rnnbook-pdf}``: a paragraph linking the book's PDF: the copy beside the site when the
    build made one (``rnnbook_pdf`` in the Sphinx config, set by ``rnnbook build --pdf``), else the
    published one (under the base URL), else how to make it."""

    def run(self):
        from rnnbook.book.files import pdf_name

        env = self.state.document.settings.env
        env.note_reread()  # what it says depends on the build (--pdf, the base URL), not on the page
        local, base, name = env.config.rnnbook_pdf, env.config.html_baseurl, pdf_name()
        para = nodes.paragraph()
        if local:
            href = posixpath.relpath(local, posixpath.dirname(env.docname) or ".")
            para += nodes.Text("The whole book is one PDF: ")
            para += nodes.raw("", f'<a class="reference download rnnbook-pdf" href="{href}">{local}</a>',
                              format="html")
            para += nodes.Text(" (title page with version, commit, date and preset; figures and tables "
                               "numbered as on this site; the bibliography).")
        else:
            para += nodes.Text("This build made no PDF: ")
            para += nodes.literal("rnnbook build --pdf", "rnnbook build --pdf")
            para += nodes.Text(f" writes the whole book as _build/pdf/{name} and puts it beside these pages")
            if base:
                para += nodes.Text("; the published book's is ")
                para += nodes.reference(base + name, base + name, refuri=base + name)
            para += nodes.Text(".")
        return [para]


def setup(app):
    app.add_config_value("rnnbook_pdf", "", "html")
    app.connect("config-inited", on_config_inited, priority=900)
    app.connect("doctree-resolved", on_doctree_resolved)
    app.connect("build-finished", on_build_finished)
    app.connect("html-page-context", on_html_page_context, priority=900)
    app.connect("env-purge-doc", on_env_purge_doc)
    app.connect("env-merge-info", on_env_merge_info)
    app.add_directive("cff-bibtex", CffBibtex)
    app.add_directive("rnnbook-pdf", PdfLink)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
