"""What changed: ``_build/values.json`` (every glued value with its chapter and parameters),
``rnnbook diff`` (a planted change is reported; verdicts first, then numbers by largest relative
change) and the page "Compared with the default book"."""
from __future__ import annotations

import io
import json
import math
import shutil

import nbformat
import pytest

from rnnbook.book import chapter_cache, cli, values

from conftest import ROOT


def _doc(chapters: dict, preset: str = "default", **extra) -> dict:
    """A values document: ``{docname: {name: value}}`` plus parameters ``{"seed": 0}``."""
    out = {"format": values.FORMAT, "preset": preset, "overrides": [], "commit": "abc1234",
           "version": "0.1.0", "built": "2026-12-05 04:30 UTC", "default": preset == "default", "complete": True,
           "chapters": {}}
    for doc, vals in chapters.items():
        records = {}
        for name, v in vals.items():
            kind = values.kind_of(name, float(v) if isinstance(v, (int, float)) else v)
            records[name] = {"kind": kind, "value": float(v) if kind == "number" else v, "text": str(v)}
        out["chapters"][doc] = {"title": doc, "status": "executed", "parameters": extra.get("parameters", {"seed": 0}),
                                "differs_from_default": extra.get("differs", {}), "values": records}
    return out


# ---------------------------------------------------------------- reading glued values
def _glued(name: str, data: dict) -> dict:
    return nbformat.v4.new_output("display_data", data={f"application/papermill.record/{k}": v for k, v in data.items()},
                                  metadata={"scrapbook": {"name": name, "data": True, "display": False}})


def test_glued_values_keep_numbers_verdicts_and_words_not_figures_tables_or_links():
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("")
    cell.outputs = [
        _glued("rate", {"text/plain": "0.931"}),
        _glued("n_runs", {"text/plain": "12"}),
        _glued("share", {"text/markdown": "25 %", "text/plain": "<IPython.core.display.Markdown object>"}),
        _glued("verdict_sign", {"text/markdown": "does not hold: **goes down**", "text/plain": "<Markdown>"}),
        _glued("claim_clip_why", {"text/markdown": "because", "text/plain": "<Markdown>"}),
        _glued("word_gated", {"text/plain": "'supported'"}),
        _glued("fig-x", {"image/png": "iVBOR...", "text/plain": "<Figure>"}),
        _glued("tbl-x", {"text/html": "<table></table>", "text/plain": "<Styler>"}),
        _glued("fig-x-data", {"text/markdown": '<a class="rnnbook-data reference download" href="x.csv">Data</a>',
                              "text/plain": "<Markdown>"}),
        _glued("rnnbook-file:x.csv", {"application/vnd.rnnbook.file+json": {"name": "x.csv"}, "text/plain": "<f>"}),
        _glued("undefined", {"text/plain": "nan"}),
    ]
    nb.cells = [cell]
    got = values.glued_values(nb)
    assert set(got) == {"rate", "n_runs", "share", "verdict_sign", "claim_clip_why", "word_gated", "undefined"}
    assert got["rate"] == {"kind": "number", "value": 0.931, "text": "0.931"}
    assert got["share"]["kind"] == "number" and got["share"]["value"] == 25.0
    assert got["verdict_sign"] == {"kind": "verdict", "value": "does not hold: goes down",
                                   "text": "does not hold: goes down"}
    assert got["claim_clip_why"]["kind"] == "text"          # a reason, not a verdict
    assert got["word_gated"]["kind"] == "verdict" and got["word_gated"]["value"] == "supported"
    assert math.isnan(got["undefined"]["value"])


# ---------------------------------------------------------------- the comparison and its order
def test_relative_change():
    assert values.relative_change(2.0, 3.0) == pytest.approx(0.5)
    assert values.relative_change(-2.0, -1.0) == pytest.approx(0.5)
    assert values.relative_change(0.0, 1e-9) == math.inf
    assert values.relative_change(0.0, 0.0) == 0.0
    assert values.relative_change(math.nan, math.nan) == 0.0
    assert values.relative_change(math.nan, 1.0) == math.inf
    assert values.relative_change(math.inf, math.inf) == 0.0


def test_diff_lists_verdicts_first_then_numbers_by_largest_relative_change():
    old = _doc({"chapters/a": {"small": 100.0, "big": 1.0, "from_zero": 0.0, "same": 5.0, "noise": 1.0,
                               "verdict_x": "holds", "label": "tanh", "gone": 1.0},
                "chapters/b": {"middle": 10.0, "verdict_y": "supported"}})
    new = _doc({"chapters/a": {"small": 101.0, "big": 3.0, "from_zero": 0.5, "same": 5.0, "noise": 1.0 + 1e-12,
                               "verdict_x": "does not hold", "label": "relu", "added": 2.0},
                "chapters/b": {"middle": 15.0, "verdict_y": "supported"}})
    d = values.diff(old, new)
    assert [c.name for c in d.verdicts] == ["verdict_x"]
    assert [c.name for c in d.numbers] == ["from_zero", "big", "middle", "small"]   # inf, 200 %, 50 %, 1 %
    assert [c.name for c in d.texts] == ["label"]
    assert [c.name for c in d.only_old] == ["gone"] and [c.name for c in d.only_new] == ["added"]
    assert [c.name for c in d.changed][:2] == ["verdict_x", "from_zero"]
    text = values.format_diff(d, old, new)
    assert text.index("verdict_x") < text.index("from_zero") < text.index("big") < text.index("middle") < \
        text.index("small") < text.index("label")
    assert "+200 %" in text and "+50 %" in text and "from 0" in text
    assert not values.diff(old, old)


def test_a_tolerance_hides_small_relative_changes():
    old, new = _doc({"c": {"x": 100.0, "y": 1.0}}), _doc({"c": {"x": 100.5, "y": 2.0}})
    assert [c.name for c in values.diff(old, new).numbers] == ["y", "x"]
    assert [c.name for c in values.diff(old, new, rtol=0.01).numbers] == ["y"]


def test_diff_reports_the_parameters_that_differ():
    old = _doc({"chapters/a": {"x": 1.0}, "chapters/b": {"y": 1.0}}, parameters={"seq_len": 20, "seed": 0})
    new = _doc({"chapters/a": {"x": 1.0}, "chapters/b": {"y": 1.0}}, parameters={"seq_len": 50, "seed": 0})
    d = values.diff(old, new)
    assert d.parameters == [("seq_len", 20, 50, ["chapters/a", "chapters/b"])]
    assert "seq_len: 20 -> 50  (chapters/a, chapters/b)" in values.format_diff(d, old, new)


def _run_cli(*argv) -> tuple[int, str, str]:
    import contextlib

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(list(argv))
    return code, out.getvalue(), err.getvalue()


def test_rnnbook_diff_reports_a_planted_change(tmp_path):
    base = {"chapters/relu": {"reach": 20.0, "rate": 0.9, "verdict_relu_short": "supported"},
            "chapters/clipping": {"n_diverged": 3.0}}
    planted = json.loads(json.dumps(base))
    planted["chapters/relu"]["rate"] = 0.45
    (tmp_path / "old" / "_build").mkdir(parents=True)
    (tmp_path / "old" / "_build" / "values.json").write_text(json.dumps(_doc(base)))
    (tmp_path / "new.json").write_text(json.dumps(_doc(planted, preset="quick")))
    code, out, err = _run_cli("diff", str(tmp_path / "old" / "_build"), str(tmp_path / "new.json"))
    assert code == 1, err
    changed = [ln for ln in out.splitlines() if "->" in ln]
    assert len(changed) == 1 and "chapters/relu rate" in changed[0] and "0.9  ->  0.45" in changed[0], out
    assert "-50 %" in changed[0] and "preset 'quick'" in out
    code, out, _ = _run_cli("diff", str(tmp_path / "new.json"), str(tmp_path / "new.json"))
    assert code == 0 and "no parameter, value or verdict differs" in out
    code, out, err = _run_cli("diff", str(tmp_path / "missing"), str(tmp_path / "new.json"))
    assert code == 2 and not out and "no values.json" in err


# ---------------------------------------------------------------- the page and the table of contents
def test_the_comparison_page_follows_the_last_chapter_in_the_table_of_contents():
    toc = "format: jb-book\nroot: index\nchapters:\n- file: chapters/a\n- file: chapters/b.md\n- file: chapters/cite\n"
    import yaml

    got = yaml.safe_load(values.toc_with_page(toc, values.COMPARE_DOC, ["chapters/a", "chapters/b"]))
    assert [c["file"] for c in got["chapters"]] == ["chapters/a", "chapters/b.md", values.COMPARE_DOC, "chapters/cite"]


def test_the_comparison_page_lists_parameters_verdicts_and_numbers_that_moved():
    reference = _doc({"chapters/relu": {"verdict_relu_short": "supported", "reach": 20.0, "front_cap": 1000.0}})
    current = _doc({"chapters/relu": {"verdict_relu_short": "contradicted", "reach": 5.0, "front_cap": 10.0}},
                   preset="quick", differs={"seq_len": 20}, parameters={"seq_len": 6})
    page = values.comparison_page(current, reference, headline={("chapters/relu", "front_cap")})
    assert page.startswith(f"({values.COMPARE_DOC})=\n# Compared with the default book")
    assert "| `seq_len` | {doc}`chapters/relu` | `20` | `6` |" in page
    assert "`verdict_relu_short`: default book: supported; this build: **contradicted**" in page
    assert "| {doc}`chapters/relu` | `reach` | 20.0 | 5.0 | -75 % |" in page
    front = page[page.index("## The front page"):page.index("## Verdicts")]
    assert "`front_cap`" in front and "`front_cap`" not in page[page.index("## Verdicts"):]
    lonely = values.comparison_page(current, None)
    assert "nothing to compare the numbers with" in lonely and "`seq_len`" in lonely


def test_editing_values_or_pdf_re_executes_no_chapter(tmp_path):
    pkg = tmp_path / "rnnbook"
    shutil.copytree(chapter_cache.package_dir(), pkg, ignore=shutil.ignore_patterns("__pycache__"))
    before = chapter_cache.src_digest(pkg)
    for edited in ("book/values.py", "book/pdf.py"):
        with open(pkg / edited, "a") as f:
            f.write("\n# an edit that cannot change a number on a page\n")
    assert chapter_cache.src_digest(pkg) == before


# ---------------------------------------------------------------- the quick build
@pytest.mark.slow
def test_every_build_writes_its_values_with_their_chapter_and_parameters(quick_book):
    from conftest import quick_params

    assert quick_book.code == 0, quick_book.output
    doc = values.load(quick_book.build_dir)
    from rnnbook.book import build

    chapters = build.find_chapters(ROOT)
    assert set(doc["chapters"]) == {c.docname for c in chapters}
    assert doc["preset"] == "quick" and doc["default"] is False
    for c in chapters:
        entry = doc["chapters"][c.docname]
        assert entry["parameters"] == json.loads(json.dumps(quick_params(c.title))), c.docname
        assert entry["values"], f"{c.docname} glued no value"
    kinds = {r["kind"] for ch in doc["chapters"].values() for r in ch["values"].values()}
    assert kinds == {"number", "verdict", "text"}
    assert (quick_book.html_dir / "values.json").read_text() == (quick_book.build_dir / "values.json").read_text()
    page = (quick_book.html_dir / f"{values.COMPARE_DOC}.html").read_text()
    assert "Compared with the default book" in page and "nothing to compare the numbers with" in page


@pytest.mark.slow
def test_a_build_with_a_changed_parameter_reports_it_against_the_default_values(quick_book, tmp_path):
    """A second build with one parameter changed (``n_examples``, one chapter re-executes), compared
    with the first build's values planted as the default book's."""
    from rnnbook.book import build

    assert quick_book.code == 0, quick_book.output
    build_dir = tmp_path / "_build"
    shutil.copytree(quick_book.build_dir / "executed", build_dir / "executed")
    first = quick_book.build_dir / "values.json"
    shutil.copyfile(first, build_dir / values.DEFAULT_FILE)
    out = io.StringIO()
    code = build.build(build.Options(root=ROOT, preset="quick", overrides=["n_examples=2"], progress=False,
                                     build_dir=build_dir), out=out)
    assert code == 0, out.getvalue()
    assert "chapters/task_and_model" in out.getvalue()
    code, text, err = _run_cli("diff", str(first), str(build_dir))
    assert code == 1, err
    assert "n_examples: 3 -> 2  (chapters/task_and_model)" in text, text
    changed = {ln.split()[1] for ln in text.splitlines() if "->" in ln and ln.startswith("  chapters/")}
    assert changed and all(ln.startswith("  chapters/task_and_model ") for ln in text.splitlines()
                           if "  ->  " in ln), text
    assert {"logits_shape", "frames_shape"} <= changed, text
    page = (build_dir / "html" / f"{values.COMPARE_DOC}.html").read_text()
    assert "n_examples" in page and "nothing to compare" not in page
