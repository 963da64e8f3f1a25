"""The build: failures, caching, and a strict smoke build of the whole book."""
from __future__ import annotations

import html
import json
import io
import re
from pathlib import Path

import nbformat
import pytest

from rnnbook.book import build, cli, scope
from rnnbook.book.build import ChapterFailed, Options
from rnnbook.book.chapter_cache import ChapterCache, src_digest

from conftest import FRONT, assert_chapter_glue, glue_problem, glued, page_problems


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
    assert not list((toy_book / "_build" / "executing").iterdir())  # no execution left behind

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


def test_each_execution_has_its_own_notebook(toy_book, monkeypatch):
    """Simultaneous builds of one checkout never execute through the same notebook: every execution
    writes into its own folder under _build/executing/, removed once the notebook is cached."""
    import papermill

    seen, real = [], papermill.execute_notebook

    def spy(source, output, **kwargs):
        seen.append(Path(output))
        assert not Path(output).exists()
        return real(source, output, **kwargs)

    monkeypatch.setattr(papermill, "execute_notebook", spy)
    _fix_boom(toy_book)
    for _ in range(2):
        assert run(toy_book, html=False, force=True)[0] == 0
    assert len(seen) == 4 and len({p.parent for p in seen}) == 4
    executing = toy_book / "_build" / "executing"
    assert all(p.parent.parent == executing for p in seen)
    assert not list(executing.iterdir())


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


# ------------------------------------------------------------------ the glue checks, on myst-nb's own output
GLUE_CHAPTER = FRONT + """
# Glue

```{code-cell} ipython3
:tags: [parameters]

seed = 0
```

```{code-cell} ipython3
:tags: [remove-cell]

import numpy as np, pandas as pd
from IPython.display import Markdown
from myst_nb import glue

glue("good", 0.25, display=False)
glue("bad", float(np.mean([])) if seed == 0 else 0.5, display=False)
glue("blank", Markdown(""), display=False)
glue("words", Markdown("a **NaN** loss, in words"), display=False)
glue("tbl-bad", pd.DataFrame({"gradient": ["one element is Inf", "finite"], "norm": [np.inf, 1.0],
                              "range": ["(0, +inf)", "(-1, 1)"]}), display=False)
```

Good {glue:text}`good`, bad ({glue:text}`bad`). Blank {glue:md}`blank`. In words: {glue:md}`words`.

```{glue:figure} tbl-bad
:name: tbl-bad

A table.
```
"""


@pytest.mark.slow
def test_glue_checks_catch_empty_and_non_finite_values(toy_book):
    """A chapter pasting a NaN, an empty {glue:md} and a table with an Inf cell, built by myst-nb:
    the notebook and the page checks name each, and pass the legitimate words and intervals."""
    (toy_book / "chapters" / "boom.md").write_text(GLUE_CHAPTER)
    code, out = run(toy_book)
    assert code == 0, out
    (executed,) = (toy_book / "_build" / "executed").glob("chapters__boom-*.ipynb")
    nb = nbformat.read(executed, as_version=4)
    with pytest.raises(AssertionError) as err:
        assert_chapter_glue(nb, "chapters/boom", ["tbl-bad"])
    assert "bad" in str(err.value)
    values = glued(nb)
    assert glue_problem(values["bad"]) == "pastes ['nan'] (text/plain 'nan')"
    assert glue_problem(values["blank"]).startswith("renders nothing (text/markdown")
    assert glue_problem(values["tbl-bad"]) == "table cells ['inf'] are NaN/Inf"
    assert glue_problem(values["good"]) is None and glue_problem(values["words"]) is None

    problems = page_problems((toy_book / "_build" / "html" / "chapters" / "boom.html").read_text())
    assert "{glue:text} value 'nan' is NaN/Inf" in problems
    assert "table cell 'inf'" in problems
    printed = [p for p in problems if p.startswith("printed NaN/Inf")]
    # the pasted nan and the table's inf; not "(0, +inf)", "one element is Inf" or "a NaN loss"
    assert len(printed) == 2 and "bad ( nan )" in printed[0] and "Inf inf" in printed[1], printed
    assert len(problems) == 4, problems
    assert not page_problems((toy_book / "_build" / "html" / "chapters" / "ok.html").read_text())


def _fix_boom(root, body="print('seq_len is', seq_len)"):
    boom = root / "chapters" / "boom.md"
    boom.write_text(boom.read_text().replace("raise ValueError(f'boom at {seq_len}')", body))


def test_only_executes_the_selected_chapters(toy_book, capsys):
    code, out = run(toy_book, html=False, only=["ok"])  # boom would raise: it is not run
    assert code == 0
    assert re.search(r"chapters/ok\s+[\d.]+ s\s+executed", out)
    assert re.search(r"chapters/boom\s+-\s+not selected: placeholder", out)
    placeholder = build.placeholder_notebook(build.find_chapters(toy_book)[1])
    assert placeholder.cells[0].source.startswith("# Boom\n") and "--only boom" in placeholder.cells[0].source
    _fix_boom(toy_book)
    code, out = run(toy_book, html=False, only=["chapters/boom"])
    assert re.search(r"chapters/boom\s+[\d.]+ s\s+executed", out)
    assert re.search(r"chapters/ok\s+-\s+not selected: cached notebook", out)
    assert cli.main(["build", "--root", str(toy_book), "--no-html", "--only", "okk"]) == 2
    err = capsys.readouterr().err
    assert "--only: no chapter 'okk'" in err and "did you mean 'ok'" in err and "the chapters are ok, boom" in err


def test_the_executor_reaches_the_kernels_but_not_the_cache_key(toy_book, capsys):
    _fix_boom(toy_book, "import os; print('executor', os.environ['RNNBOOK_EXECUTOR'], "
                        "os.environ['RNNBOOK_RAY_ADDRESS'], os.environ['RNNBOOK_RAY_CPUS_PER_RUN'])")
    code, out = run(toy_book, html=False, executor="ray", ray_address="ray://head:10001", ray_cpus_per_run=2)
    assert code == 0 and "executor: ray, joining the cluster at ray://head:10001" in out
    (executed,) = (toy_book / "_build" / "executed").glob("chapters__boom-*.ipynb")
    nb = nbformat.read(executed, as_version=4)
    outputs = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert "executor ray ray://head:10001 2" in outputs
    code, out = run(toy_book, html=False)  # the local executor gives the same numbers: nothing re-runs
    assert " executed" not in out
    with pytest.raises(SystemExit) as exc:  # argparse's own message, before anything runs
        cli.main(["build", "--root", str(toy_book), "--no-html", "--executor", "dask"])
    assert exc.value.code == 2
    assert "argument --executor: invalid choice: 'dask' (choose from 'local', 'ray')" in capsys.readouterr().err
    from rnnbook import sweeps

    assert cli.EXECUTORS == sweeps.EXECUTORS


def test_dry_run_lists_runs_cached_runs_and_the_estimate(toy_book, tmp_path, monkeypatch):
    from rnnbook import sweeps
    from rnnbook.training import TrainConfig

    modules = tmp_path / "plans"
    modules.mkdir()
    (modules / "toyplan_ok.py").write_text(
        "from rnnbook.training import TrainConfig\n\n"
        "STORE = 'toy'\n\n"
        "def plan(params):\n"
        "    base = TrainConfig(seq_len=4, lag=1, n_train=64, n_val=16, n_test=16, epochs=2, batch_size=16)\n"
        "    return [TrainConfig(**{**base.to_dict(), 'conv_filters': (16, 32), 'seed': params['seed'] + s})\n"
        "            for s in range(3)] + [base]  # base (seed 0) twice when seed=0\n")
    monkeypatch.syspath_prepend(str(modules))
    monkeypatch.setattr(scope, "PLAN_MODULE", "toyplan_{stem}")
    monkeypatch.setattr(sweeps, "RUNS_DIR", tmp_path / "runs")
    monkeypatch.setattr(sweeps, "MIN_CALIBRATION_WORK", 0)  # let the one tiny cached run calibrate
    base = TrainConfig(seq_len=4, lag=1, n_train=64, n_val=16, n_test=16, epochs=2, batch_size=16)
    record = {"config": base.to_dict(), "diverged": False, "wall_time": 36.0, "steps": {"loss": [1.0] * 8}}
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / f"{sweeps.run_key(base)}.json").write_text(json.dumps(record))
    from rnnbook import reference

    monkeypatch.setenv(reference.STORE_ENV, str(tmp_path / "reference"))
    shipped = TrainConfig(**{**base.to_dict(), "conv_filters": (16, 32), "seed": 2})  # the plan's third run
    reference.append(shipped, dict(record, config=shipped.to_dict()), "toy-part")
    code, out = run(toy_book, dry_run=True)
    assert code == 0
    # 3 distinct runs: 1 shipped, 1 in the run cache, 1 to train
    assert re.search(r"chapters/ok\s+3\s+1\s+1\s+0\.01\s+executed", out), out
    assert re.search(r"chapters/boom\s+\?\s+\?\s+\?\s+\?\s+executed \(grid unknown: no plan\(\)\)", out), out
    # the cached run: 36 s for 8 updates x 16 sequences x 4 frames (+ checks); one such run to go: 36 s
    assert "estimated 0.01 run-hours" in out and "grid unknown for chapters/boom" in out
    assert not (toy_book / "_build" / "executed").exists(), "a dry run executed something"
    code, out = run(toy_book, dry_run=True, only=["boom"])
    assert re.search(r"chapters/ok\s+-\s+-\s+-\s+-\s+not selected", out)


# ------------------------------------------------------------------ the whole book
def _text(page: str) -> str:
    body = page[page.find("<main"): page.find("</main>")]
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", body)))


@pytest.mark.slow
def test_quick_build_of_the_whole_book(repo_root, quick_book):
    build_dir = quick_book.build_dir
    src_before = quick_book.src_digest
    code, out = quick_book.code, quick_book.output  # its time is the bench's business, not a test's
    assert code == 0, out
    html_dir = quick_book.html_dir
    chapters = build.find_chapters(repo_root)
    for docname in build.toc_docnames(repo_root):
        assert (html_dir / f"{docname}.html").exists(), f"no page for {docname}"
        problems = page_problems((html_dir / f"{docname}.html").read_text())
        assert not problems, f"{docname}: {problems[:8]}"
    for c in chapters:
        page = (html_dir / f"{c.docname}.html").read_text()
        assert re.search(r'<div class="[^"]*\bprovenance\b[^"]*"', page), f"{c.docname}: no provenance block"
        text = _text(page)
        assert "Preset: quick" in text
        assert "Git commit:" in text and "TensorFlow / Keras / NumPy:" in text and "Wall time:" in text
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

    # an unchanged rebuild executes nothing
    if src_digest() != src_before:  # only in a checkout shared with people editing src/
        pytest.skip("src/rnnbook changed during the build; the warm rebuild would re-execute")
    code, out = run(repo_root, preset="quick", build_dir=build_dir)
    assert code == 0, out
    assert " executed" not in out


def test_the_dry_run_plans_without_progress_bars(monkeypatch):
    """A planner that loads recorded grids through the sweeps runs with tqdm disabled, and the
    environment is restored after."""
    import os

    from rnnbook.book import scope

    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    seen = scope._quietly(lambda: os.environ.get("TQDM_DISABLE"))
    assert seen == "1" and "TQDM_DISABLE" not in os.environ


def test_a_value_a_code_cell_prints_on_the_page_is_a_problem():
    """Chapters show values through glue; a cell whose last line returns a value (a string, say)
    would print its repr under the cell."""
    stray = ('<div class="cell_output docutils container"><pre class="output text_plain literal-block">'
             "'&lt;a class=&quot;rnnbook-data&quot;&gt;Data (CSV)&lt;/a&gt;'</pre></div>")
    assert any("prints a value" in p for p in page_problems(f"<p>Text</p>{stray}"))
    highlighted = ('<div class="cell_output docutils container"><div class="output text_plain '
                   'highlight-myst-ansi notranslate"><div class="highlight"><pre>&#39;x&#39;</pre></div></div></div>')
    assert any("prints a value" in p for p in page_problems(highlighted))
    assert not page_problems("<p>Text</p>")
