"""The build: failures, caching, and a strict smoke build of the whole book."""
from __future__ import annotations

import html
import io
import re
import time

import nbformat
import pytest

from rnnbook.book import build, cli
from rnnbook.book.build import ChapterFailed, Options
from rnnbook.book.chapter_cache import ChapterCache, src_digest


def run(root, out=None, **kw):
    out = out or io.StringIO()
    code = build.build(Options(root=root, progress=False, **kw), out=out)
    return code, out.getvalue()


def test_toc_and_chapters(repo_root):
    names = build.toc_docnames(repo_root)
    assert names[0] == "index"
    for must in ("chapters/task_and_model", "chapters/cite", "chapters/bibliography"):
        assert must in names
    chapters = {c.docname for c in build.find_chapters(repo_root)}
    assert "chapters/task_and_model" in chapters
    assert "chapters/cite" not in chapters  # a static page, not executed


def test_failing_chapter_stops_the_build(toy_book, capsys):
    with pytest.raises(ChapterFailed) as err:
        run(toy_book, html=False)
    msg = str(err.value)
    assert "chapters/boom" in msg
    assert "cell" in msg and "In [" in msg
    assert "ValueError: boom at 3" in msg
    failed = toy_book / "_build" / "failed" / "chapters__boom.ipynb"
    assert failed.exists()
    nb = nbformat.read(failed, as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert errors and errors[0]["ename"] == "ValueError"
    # the chapter that finished stays cached
    assert len(list((toy_book / "_build" / "executed").glob("chapters__ok-*.ipynb"))) == 1

    # through the command line: non-zero exit naming chapter, cell and exception
    code = cli.main(["build", "--root", str(toy_book), "--no-progress", "--no-html"])
    assert code == 1
    err_text = capsys.readouterr().err
    assert "chapters/boom" in err_text and "ValueError: boom at 3" in err_text and "cell" in err_text

    # bad parameters now: refused before running, nothing cached is deleted
    assert cli.main(["build", "--root", str(toy_book), "-p", "sed=1"]) == 2
    assert "did you mean 'seed'" in capsys.readouterr().err
    assert len(list((toy_book / "_build" / "executed").glob("chapters__ok-*.ipynb"))) == 1

    # fix the chapter: only it runs, the other comes from the cache
    boom = toy_book / "chapters" / "boom.md"
    boom.write_text(boom.read_text().replace("raise ValueError(f'boom at {seq_len}')", "print(seq_len)"))
    code, out = run(toy_book, html=False)
    assert code == 0
    assert re.search(r"chapters/ok\s+-\s+cached", out)
    assert re.search(r"chapters/boom\s+[\d.]+ s\s+executed", out)

    # unchanged: nothing runs; --force: everything runs
    code, out = run(toy_book, html=False)
    assert "executed" not in out
    code, out = run(toy_book, html=False, force=True)
    assert out.count(" executed") == 2


def test_parameters_reach_the_kernel(toy_book):
    boom = toy_book / "chapters" / "boom.md"
    boom.write_text(boom.read_text().replace("raise ValueError(f'boom at {seq_len}')", "print('seq_len is', seq_len)"))
    code, _ = run(toy_book, html=False, preset="quick", overrides=["seq_len=7"])
    assert code == 0
    chapters = build.find_chapters(toy_book)
    resolved = build.resolve_parameters(toy_book, chapters, "quick", (), ["seq_len=7"])
    jobs = {j.chapter.docname: j for j in build.plan(toy_book, chapters, resolved)}
    assert jobs["chapters/boom"].parameters == {"seq_len": 7}
    assert jobs["chapters/ok"].parameters == {"seed": 1}  # from presets/quick.yaml
    cache = ChapterCache(toy_book / "_build" / "executed")
    nb = nbformat.read(cache.get("chapters/boom", jobs["chapters/boom"].key), as_version=4)
    injected = next(c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert "seq_len = 7" in injected.source
    outputs = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert "seq_len is 7" in outputs


# ------------------------------------------------------------------ the whole book
def _text(page: str) -> str:
    body = page[page.find("<main"): page.find("</main>")]
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", body)))


@pytest.mark.slow
def test_quick_build_of_the_whole_book(repo_root, quick_book):
    build_dir = quick_book.build_dir
    src_before = quick_book.src_digest
    code, out, cold = quick_book.code, quick_book.output, quick_book.seconds
    assert code == 0, out
    html_dir = quick_book.html_dir
    chapters = build.find_chapters(repo_root)
    for docname in build.toc_docnames(repo_root):
        assert (html_dir / f"{docname}.html").exists(), f"no page for {docname}"
    for c in chapters:
        page = (html_dir / f"{c.docname}.html").read_text()
        assert re.search(r'<div class="[^"]*\bprovenance\b[^"]*"', page), f"{c.docname}: no provenance block"
        text = _text(page)
        assert "Preset: quick" in text
        assert "Git commit:" in text and "TensorFlow / Keras / NumPy:" in text and "Wall time:" in text
        pasted = re.findall(r'<span class="pasted-text">(.*?)</span>', page, flags=re.S)
        pasted += re.findall(r'<span class="pasted-inline">(.*?)</span>', page, flags=re.S)
        for value in pasted:
            assert re.sub(r"<[^>]+>", "", value).strip(), f"{c.docname}: an empty glued value"
        assert "Could not find" not in text
    # the first chapter's glued values and figure
    first = (html_dir / "chapters" / "task_and_model.html").read_text()
    assert len(re.findall(r'class="pasted-text"', first)) >= 10
    assert re.search(r'<img[^>]+src="[^"]+\.png"', first)
    assert "Fig. 1" in _text(first)
    # the bibliography holds every work of references.bib
    bib = (repo_root / "references.bib").read_text()
    keys = re.findall(r"@\w+\{([^,]+),", bib)
    biblio = _text((html_dir / "chapters" / "bibliography.html").read_text())
    assert len(keys) >= 10
    for title in re.findall(r"^\s*title\s*=\s*\{(.+)\},?\s*$", bib, flags=re.M):
        words = re.sub(r"[{}\\]", "", title).split()[:3]
        assert " ".join(words).lower() in biblio.lower(), f"bibliography lacks {title!r}"
    assert cold < 180, f"quick build took {cold:.0f} s"

    # an unchanged rebuild executes nothing and is fast
    if src_digest() != src_before:  # only in a checkout shared with people editing src/
        pytest.skip("src/rnnbook changed during the build; the warm rebuild would re-execute")
    t0 = time.time()
    code, out = run(repo_root, preset="quick", build_dir=build_dir)
    warm = time.time() - t0
    assert code == 0, out
    assert " executed" not in out
    assert warm < 30, f"unchanged rebuild took {warm:.0f} s"
