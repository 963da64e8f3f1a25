"""What changed: every glued value of a build, ``rnnbook diff``, and the page "Compared with the
default book".

Every ``rnnbook build`` writes ``_build/values.json``: for each chapter its status, the parameters
it ran with (every declared parameter, defaults included) and every value it glued that the
prose can quote (numbers, verdicts, words), read from the executed notebook (myst-nb stores a
glued value as a display output with metadata ``scrapbook.name``). Figures, tables, the data
links under captions and the files a chapter publishes are left out: their numbers are in the
CSVs beside the figures. A build with the default parameters also writes
``_build/values-default.json``, the reference of the page "Compared with the default book" that
every build with other parameters gets::

    {"format": "rnnbook-values/1", "preset": "quick", "overrides": ["seq_len"], "default": false,
     "commit": "abc1234", "version": "0.1.0", "built": "2026-12-05 04:30 UTC",
     "chapters": {"chapters/why_tanh": {
         "title": "Why tanh is the default", "status": "executed",
         "parameters": {"seq_len": 6, ...}, "differs_from_default": {"seq_len": 20},
         "values": {"rate_tanh_default": {"kind": "number", "value": 0.93, "text": "0.93"},
                    "verdict_sign": {"kind": "verdict", "value": "does not hold ...", "text": "..."}}}}}

``kind`` is ``number`` (a glued number, or a phrase that is one number such as ``"25 %"``),
``verdict`` (a value named ``verdict*``, ``claim*`` or ``word*``, not a ``*_why`` reason) or
``text``. ``rnnbook diff OLD NEW`` (:func:`main`) compares two builds: verdicts first, then the
numbers by largest relative change, then the other words, then values only one side has.
"""
from __future__ import annotations

import argparse
import ast
import datetime as _dt
import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

FORMAT = "rnnbook-values/1"
VALUES_FILE, DEFAULT_FILE = "values.json", "values-default.json"
#: The docname of the page "Compared with the default book" (at the book's root).
COMPARE_DOC = "compared-with-default"
#: Numbers closer than this relative difference are the same (float noise between machines).
RTOL = 1e-9

_RECORD = "application/papermill.record/"
_SKIP_MIMES = ("image/", "text/html", "application/vnd.rnnbook")
_VERDICT = re.compile(r"(^|_)(verdicts?|claim|word)(_|$)")
_WHY = re.compile(r"(^|_)why(_|$)")
_NUMBER = re.compile(r"^[-+]?(?:\d[\d,]*(?:\.\d*)?|\.\d+)(?:e[-+]?\d+)?\s*%?$|^[-+]?(?:nan|inf)$", re.I)


# --------------------------------------------------------------------------
# Reading the glued values of an executed notebook
# --------------------------------------------------------------------------
def plain(markdown: str) -> str:
    """``markdown`` as one line of plain text (emphasis and code marks dropped)."""
    return " ".join(re.sub(r"\*\*|`", "", markdown).split())


def as_number(text: str) -> float | None:
    """The number ``text`` is (``"0.93"``, ``"1,024"``, ``"25 %"``, ``"nan"``), else None."""
    t = plain(text).strip()
    if not _NUMBER.match(t):
        return None
    return float(t.rstrip("%").strip().replace(",", ""))


def kind_of(name: str, value: Any) -> str:
    if isinstance(value, float):
        return "number"
    return "verdict" if _VERDICT.search(name) and not _WHY.search(name) else "text"


def _mime(data: Mapping[str, Any], mime: str) -> str | None:
    for key in (mime, _RECORD + mime):
        if key in data:
            v = data[key]
            return "".join(v) if isinstance(v, list) else str(v)
    return None


def read_value(name: str, data: Mapping[str, Any]) -> dict | None:
    """The record of one glued value (``{"kind", "value", "text"}``) from its mime bundle, or None
    for what is not a quotable value (a figure, a table, a published file, a caption's data link)."""
    if any(m.removeprefix(_RECORD).startswith(_SKIP_MIMES) for m in data):
        return None
    markdown = _mime(data, "text/markdown")
    if markdown is not None:
        if 'class="rnnbook-data' in markdown:
            return None
        text = plain(markdown)
        number = as_number(text)
        value: Any = number if number is not None else text
    else:
        raw = _mime(data, "text/plain")
        if raw is None:
            return None
        try:
            literal = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            literal = raw
        if isinstance(literal, bool) or literal is None:
            value, text = str(literal), str(literal)
        elif isinstance(literal, (int, float)):
            value, text = float(literal), raw
        elif raw.strip() in ("nan", "inf", "-inf"):
            value, text = float(raw), raw.strip()
        else:
            value = text = plain(str(literal))
    return {"kind": kind_of(name, value), "value": value, "text": text}


def glued_values(nb) -> dict[str, dict]:
    """Every quotable value ``nb`` (an executed notebook, nbformat) glued: name -> record."""
    out = {}
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            name = (output.get("metadata") or {}).get("scrapbook", {}).get("name")
            if name:
                record = read_value(name, output.get("data", {}))
                if record is not None:
                    out[name] = record
    return out


def _json_number(v: Any) -> Any:
    """NaN and infinities as the strings "nan", "inf", "-inf" (JSON has no such numbers)."""
    return str(v) if isinstance(v, float) and not math.isfinite(v) else v


def _number(v: Any) -> float:
    return float(v)


# --------------------------------------------------------------------------
# Writing values.json during a build
# --------------------------------------------------------------------------
def chapter_title(path: Path, default: str) -> str:
    text = Path(path).read_text()
    return next((ln[2:].strip() for ln in text.splitlines() if ln.startswith("# ")), default)


def headline_keys(root: Path, docname: str = "index") -> set[tuple[str, str]]:
    """``(chapter, name)`` of every value the front page pastes (``{glue:text}`chapters/x.md::key```)."""
    path = next((p for p in (root / f"{docname}.md", root / f"{docname}.ipynb") if p.is_file()), None)
    text = path.read_text() if path else ""
    pairs = re.findall(r"\{glue(?::\w+)?\}`([^`:]+?)\.(?:md|ipynb)::([^`:]+)", text)
    pairs += [(doc, key) for key, doc in re.findall(r"```\{glue:\w+\}\s+(\S+)\s*\n:doc:\s*(\S+?)\.(?:md|ipynb)", text)]
    return {(doc, key) for doc, key in pairs}


def collect(chapters: Iterable, jobs: Iterable, executed: Mapping[str, Path], statuses: Mapping[str, str],
            default_values: Mapping[str, Any], *, preset: str, overrides: Iterable[str], commit: str,
            version: str, now: float | None = None) -> dict:
    """The values.json document of a build (see the module's docstring). ``chapters`` and ``jobs``
    are :mod:`rnnbook.book.build`'s; ``default_values`` the resolved values of the default preset."""
    import nbformat

    from rnnbook.book import params

    parameters = {job.chapter.docname: job.parameters for job in jobs}
    doc: dict[str, Any] = {"format": FORMAT, "preset": preset, "overrides": sorted(overrides),
                           "commit": commit, "version": version}
    now = _dt.datetime.now(_dt.timezone.utc) if now is None else _dt.datetime.fromtimestamp(now, _dt.timezone.utc)
    doc["built"] = now.strftime("%Y-%m-%d %H:%M UTC")
    out: dict[str, dict] = {}
    for c in chapters:
        ran = {**c.defaults, **parameters.get(c.docname, {})}
        default = {**c.defaults, **params.for_chapter(default_values, c.defaults)}
        status = statuses.get(c.docname, "executed")
        path = executed.get(c.docname)
        real = path is not None and "placeholder" not in status
        values = glued_values(nbformat.read(path, as_version=4)) if real else {}
        out[c.docname] = {
            "title": chapter_title(c.path, c.title), "status": status if real else "not executed",
            "parameters": ran,
            "differs_from_default": {k: v for k, v in default.items() if ran.get(k) != v},
            "values": {k: {**r, "value": _json_number(r["value"])} for k, r in values.items()},
        }
    doc["default"] = all(not ch["differs_from_default"] for ch in out.values())
    doc["complete"] = all(ch["status"] != "not executed" for ch in out.values())
    doc["chapters"] = out
    return doc


def dumps(doc: Mapping) -> str:
    return json.dumps(doc, indent=1, ensure_ascii=False, default=str) + "\n"


def before_html(root: Path, build_dir: Path, chapters, jobs, executed, report, resolved,
                default_values: Mapping) -> dict[str, bytes]:
    """The build's hook once every chapter has its notebook (:func:`write_build_values` with the
    build's objects; ``report``: its rows ``(chapter, status, seconds)``; ``default_values``: the
    default preset's resolved values)."""
    return write_build_values(root, build_dir, chapters, jobs, executed, {n: s for n, s, _ in report},
                              default_values, preset=resolved.preset, overrides=resolved.overridden,
                              toc_text=(root / "_toc.yml").read_text())


def write_build_values(root: Path, build_dir: Path, chapters, jobs, executed, statuses, default_values, *,
                       preset: str, overrides: Iterable[str], toc_text: str) -> dict[str, bytes]:
    """Write ``<build_dir>/values.json`` (and ``values-default.json`` for a complete build with the
    default parameters); return the files to add to the assembled book source: for a build with
    other parameters, the page "Compared with the default book" and the ``_toc.yml`` that lists it."""
    import rnnbook
    from rnnbook.book import provenance

    doc = collect(chapters, jobs, executed, statuses, default_values, preset=preset, overrides=overrides,
                  commit=provenance.git_state(str(root)), version=rnnbook.__version__)
    text = dumps(doc)
    build_dir.mkdir(parents=True, exist_ok=True)
    (build_dir / VALUES_FILE).write_text(text)
    if doc["default"]:
        if doc["complete"]:
            (build_dir / DEFAULT_FILE).write_text(text)
        return {}
    reference_path = build_dir / DEFAULT_FILE
    reference = load(reference_path) if reference_path.is_file() else None
    page = comparison_page(doc, reference, headline=headline_keys(root))
    toc = toc_with_page(toc_text, COMPARE_DOC, [c.docname for c in chapters])
    return {f"{COMPARE_DOC}.md": page.encode(), "_toc.yml": toc.encode()}


def publish(build_dir: Path) -> None:
    """Copy ``values.json`` into the built site (``_build/html/values.json``)."""
    src, html = build_dir / VALUES_FILE, build_dir / "html"
    if src.is_file() and html.is_dir():
        (html / VALUES_FILE).write_bytes(src.read_bytes())


def toc_with_page(toc_text: str, docname: str, chapters: list[str]) -> str:
    """``_toc.yml`` with ``docname`` listed right after the last of ``chapters`` it lists."""
    import yaml

    toc = yaml.safe_load(toc_text) or {}
    best: tuple[list, int] | None = None

    def walk(node: Any) -> None:
        nonlocal best
        if isinstance(node, list):
            for i, child in enumerate(node):
                if isinstance(child, dict) and str(child.get("file", "")).removesuffix(".md") in chapters:
                    best = (node, i)
                walk(child)
        elif isinstance(node, dict):
            for key in ("parts", "chapters", "sections"):
                walk(node.get(key))

    walk(toc)
    if best is None:
        toc.setdefault("chapters", []).append({"file": docname})
    else:
        best[0].insert(best[1] + 1, {"file": docname})
    return yaml.safe_dump(toc, sort_keys=False)


# --------------------------------------------------------------------------
# Comparing two builds
# --------------------------------------------------------------------------
def load(path: str | Path) -> dict:
    """A values.json, given as the file or as the build folder holding it (``_build``)."""
    path = Path(path)
    if path.is_dir():
        path = path / VALUES_FILE
    if not path.is_file():
        raise ValueError(f"no {VALUES_FILE} at {path} (give a build folder such as _build, or the file)")
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"{path} is not an rnnbook values file (format {FORMAT!r})")
    return doc


def relative_change(old: float, new: float) -> float:
    """``|new - old| / |old|``; infinite when old is 0 (and new is not) or one side is NaN or infinite."""
    if math.isnan(old) and math.isnan(new):
        return 0.0
    if old == new:
        return 0.0
    if not (math.isfinite(old) and math.isfinite(new)) or old == 0:
        return math.inf
    return abs(new - old) / abs(old)


@dataclass
class Change:
    chapter: str
    name: str
    kind: str
    old: dict | None   # the record in OLD (None: only in NEW)
    new: dict | None
    rel: float = math.inf

    @property
    def label(self) -> str:
        return f"{self.chapter} {self.name}"


@dataclass
class Diff:
    parameters: list[tuple[str, Any, Any, list[str]]]   # name, old, new, chapters
    verdicts: list[Change]
    numbers: list[Change]    # largest relative change first
    texts: list[Change]
    only_old: list[Change]
    only_new: list[Change]

    @property
    def changed(self) -> list[Change]:
        """Every changed value in the order they are printed."""
        return self.verdicts + self.numbers + self.texts + self.only_old + self.only_new

    def __bool__(self) -> bool:
        return bool(self.parameters or self.changed)


def _same(a: dict, b: dict, rtol: float) -> tuple[bool, float]:
    if a["kind"] == "number" and b["kind"] == "number":
        rel = relative_change(_number(a["value"]), _number(b["value"]))
        return rel <= rtol, rel
    return a["value"] == b["value"], math.inf


def diff(old: Mapping, new: Mapping, rtol: float = RTOL) -> Diff:
    """What differs between two values documents: parameters, then every value."""
    params: dict[tuple[str, str, str], list[str]] = {}
    for doc in sorted(set(old["chapters"]) & set(new["chapters"])):
        a, b = old["chapters"][doc]["parameters"], new["chapters"][doc]["parameters"]
        for name in sorted(set(a) | set(b)):
            if a.get(name, "(not declared)") != b.get(name, "(not declared)"):
                key = (name, json.dumps(a.get(name, "(not declared)")), json.dumps(b.get(name, "(not declared)")))
                params.setdefault(key, []).append(doc)
    out = Diff([(n, json.loads(o), json.loads(w), docs) for (n, o, w), docs in params.items()], [], [], [], [], [])
    for doc in sorted(set(old["chapters"]) | set(new["chapters"])):
        a = old["chapters"].get(doc, {}).get("values", {})
        b = new["chapters"].get(doc, {}).get("values", {})
        for name in sorted(set(a) | set(b)):
            if name not in b:
                out.only_old.append(Change(doc, name, a[name]["kind"], a[name], None))
            elif name not in a:
                out.only_new.append(Change(doc, name, b[name]["kind"], None, b[name]))
            else:
                same, rel = _same(a[name], b[name], rtol)
                if same:
                    continue
                kind = "verdict" if "verdict" in (a[name]["kind"], b[name]["kind"]) else \
                    "number" if a[name]["kind"] == b[name]["kind"] == "number" else "text"
                getattr(out, {"verdict": "verdicts", "number": "numbers", "text": "texts"}[kind]).append(
                    Change(doc, name, kind, a[name], b[name], rel))
    out.numbers.sort(key=lambda c: (-c.rel, -_abs_change(c), c.chapter, c.name))
    return out


def _abs_change(c: Change) -> float:
    d = abs(_number(c.new["value"]) - _number(c.old["value"]))
    return d if math.isfinite(d) else math.inf


def shown(record: dict | None, width: int = 70) -> str:
    """How a record reads, on one line, cut to ``width`` characters."""
    if record is None:
        return "-"
    text = " ".join(str(record.get("text", record["value"])).split())
    if record["kind"] == "number" and re.fullmatch(r"[-+]?\d+\.\d{7,}(e[-+]?\d+)?", text):
        text = f"{float(text):.6g}"
    return text if len(text) <= width else text[: width - 3] + "..."


def percent(rel: float, old: float, new: float) -> str:
    if math.isinf(rel):
        return "from 0" if old == 0 and math.isfinite(new) else "n/a"
    return f"{'+' if new >= old else '-'}{100 * rel:.3g} %"


def describe(doc: Mapping, label: str) -> str:
    overrides = f", overrides: {', '.join(doc['overrides'])}" if doc.get("overrides") else ""
    return (f"{label}: preset {doc.get('preset')!r}{overrides}; commit {doc.get('commit')}; "
            f"built {doc.get('built')}")


def format_diff(d: Diff, old: Mapping, new: Mapping, old_label: str = "OLD", new_label: str = "NEW") -> str:
    lines = [describe(old, old_label), describe(new, new_label), ""]
    if not d:
        return "\n".join(lines + ["no parameter, value or verdict differs"])
    if d.parameters:
        lines.append(f"parameters that differ ({len(d.parameters)}):")
        for name, a, b, docs in d.parameters:
            lines.append(f"  {name}: {a!r} -> {b!r}  ({', '.join(docs)})")
        lines.append("")
    w = max([len(c.label) for c in d.changed] + [5])

    def section(title: str, changes: list[Change], numbers: bool = False) -> None:
        if not changes:
            return
        lines.append(f"{title} ({len(changes)}):")
        for c in changes:
            change = f"  [{percent(c.rel, _number(c.old['value']), _number(c.new['value']))}]" if numbers else ""
            lines.append(f"  {c.label.ljust(w)}  {shown(c.old)}  ->  {shown(c.new)}{change}")
        lines.append("")

    section("verdicts that changed", d.verdicts)
    section("numbers that changed, largest relative change first", d.numbers, numbers=True)
    section("other values that changed", d.texts)
    section(f"only in {old_label}", d.only_old)
    section(f"only in {new_label}", d.only_new)
    return "\n".join(lines).rstrip() + "\n"


# --------------------------------------------------------------------------
# The page "Compared with the default book"
# --------------------------------------------------------------------------
def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _code(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return f"`{text.replace('`', '')}`"


def comparison_page(current: Mapping, reference: Mapping | None, headline: set[tuple[str, str]] = frozenset(),
                    top: int = 25) -> str:
    """MyST Markdown of the page "Compared with the default book" for a build with other parameters:
    the parameters that differ, then (when the default build's values are at hand) the front-page
    values and verdicts that moved and the numbers that moved most."""
    chapters = current["chapters"]

    def where(doc: str) -> str:
        return f"{{doc}}`{doc}`" if doc in chapters else f"`{doc}`"

    overrides = f" with `-p`/`-f` values for {', '.join(f'`{n}`' for n in current['overrides'])}" \
        if current.get("overrides") else ""
    lines = [f"({COMPARE_DOC})=", "# Compared with the default book", "",
             f"This book was built with the preset `{current['preset']}`{overrides}, not with the default "
             "parameters, so its numbers and verdicts are not those of the default book. This page lists "
             "the parameters that differ and what they moved. The whole comparison, every value, is "
             "printed by `rnnbook diff _build/values-default.json _build/values.json`; this build's "
             '<a href="values.json" download="values.json">values.json</a> holds every glued value with '
             "the parameters that produced it.", "",
             "## Parameters that differ from the default book", ""]
    rows: dict[tuple[str, str, str], list[str]] = {}   # (name, default, this build) -> chapters
    for doc, ch in chapters.items():
        for name, default in ch["differs_from_default"].items():
            rows.setdefault((name, _code(default), _code(ch["parameters"].get(name))), []).append(doc)
    if rows:
        lines += ["| parameter | chapters | default book | this build |", "| --- | --- | --- | --- |"]
        lines += [f"| `{n}` | {', '.join(where(d) for d in docs)} | {_cell(a)} | {_cell(b)} |"
                  for (n, a, b), docs in sorted(rows.items())]
    else:
        lines.append("None: every chapter ran with its default parameters.")
    lines.append("")
    if reference is None:
        lines += ["```{note}",
                  "There is nothing to compare the numbers with: this build folder holds no values of a "
                  f"build with the default parameters (`_build/{DEFAULT_FILE}`, written by every complete "
                  "`rnnbook build` with the default parameters). Build the default book in this folder "
                  f"(`rnnbook build`), or save the published book's `values.json` as `_build/{DEFAULT_FILE}`, "
                  "then build this one again.", "```", ""]
        return "\n".join(lines)
    d = diff(reference, current)
    lines += [f"Compared with the default book built on {reference.get('built')} at commit "
              f"`{reference.get('commit')}`.", ""]
    front = [c for c in d.changed if (c.chapter, c.name) in headline and c.old and c.new]
    verdicts = [c for c in d.verdicts if (c.chapter, c.name) not in headline]
    lines += ["## The front page", ""]
    lines += [f"- `{c.name}`: default book: {_cell(shown(c.old, 300))}; this build: **{_cell(shown(c.new, 300))}**"
              for c in front] or ["Every value the front page quotes is the same as in the default book."]
    lines += ["", f"## Verdicts that changed ({len(verdicts)})", ""]
    lines += [f"- {where(c.chapter)}, `{c.name}`: default book: {_cell(shown(c.old, 300))}; "
              f"this build: **{_cell(shown(c.new, 300))}**" for c in verdicts] or ["None."]
    numbers = [c for c in d.numbers if (c.chapter, c.name) not in headline]
    lines += ["", f"## Numbers that moved most ({min(top, len(numbers))} of {len(numbers)})", ""]
    if numbers:
        lines += ["| chapter | value | default book | this build | change |", "| --- | --- | --- | --- | --- |"]
        lines += [f"| {where(c.chapter)} | `{c.name}` | {_cell(shown(c.old, 40))} | {_cell(shown(c.new, 40))} | "
                  f"{percent(c.rel, _number(c.old['value']), _number(c.new['value']))} |" for c in numbers[:top]]
    else:
        lines.append("None.")
    lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------
# rnnbook diff
# --------------------------------------------------------------------------
def add_parser(sub) -> argparse.ArgumentParser:
    """The ``diff`` subcommand (``sub``: the command line's subparsers)."""
    p = sub.add_parser(
        "diff", help="print the values and verdicts that differ between two builds",
        description="Compare two builds' values (_build/values.json, written by every rnnbook build): "
                    "the parameters that differ, the verdicts that changed, the numbers that changed "
                    "(largest relative change first), the other values, and the values only one build "
                    "has. Exit status: 0 if nothing differs, 1 if something does, 2 on an error.")
    p.add_argument("old", metavar="OLD", help="a build folder (e.g. _build) or its values.json")
    p.add_argument("new", metavar="NEW", help="a build folder or its values.json")
    p.add_argument("--rtol", type=float, default=RTOL, metavar="R",
                   help="numbers closer than this relative difference count as equal (default: %(default)g)")
    return p


def main(args, out=None, err=None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    try:
        old, new = load(args.old), load(args.new)
    except ValueError as exc:
        print(f"rnnbook diff: error: {exc}", file=err)
        return 2
    d = diff(old, new, rtol=args.rtol)
    out.write(format_diff(d, old, new, f"OLD {args.old}", f"NEW {args.new}"))
    return 1 if d else 0
