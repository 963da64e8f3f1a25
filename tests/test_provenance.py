"""The provenance block: every parameter in full, a params.yaml that rebuilds the page exactly."""

import pytest
import yaml

from conftest import ROOT, glued
from rnnbook.book import provenance

HISTORY = [
    "",
    "seeds = [0, 1, 2]  # one run each\nrnn_configs = ['tanh-orthogonal', 'relu-identity']\nlag = None\n",
    "# Parameters\nseeds = [5]\nunits = 8\n",
    "from rnnbook.book.pages import setup\nsetup()\nx = 3\n",
    "y = 4\n",
]


def namespace(**values):
    return {"In": HISTORY, "__name__": "__main__", "x": 3, "y": 4, **values}


def test_parameter_names_come_from_the_parameters_cell_and_the_injected_one():
    assert provenance.parameter_names(HISTORY) == ["seeds", "rnn_configs", "lag", "units"]
    assert provenance.parameter_names(HISTORY[:2] + HISTORY[3:]) == ["seeds", "rnn_configs", "lag"]


def test_values_are_the_ones_the_chapter_ran_with():
    ns = namespace(seeds=[5], rnn_configs=["tanh-orthogonal", "relu-identity"], lag=None, units=8)
    assert provenance.parameters(ns) == {"seeds": [5], "rnn_configs": ["tanh-orthogonal", "relu-identity"],
                                         "lag": None, "units": 8}


def test_explicit_parameters_are_taken_as_given():
    assert provenance.parameters({"seed": 1, "_hidden": 2}) == {"seed": 1}


def test_a_kernel_without_parameters_cell_says_what_to_do():
    with pytest.raises(provenance.ProvenanceError, match=r"provenance.block\(\{"):
        provenance.parameters({"In": ["", "import os\n"], "__name__": "__main__"})


def test_params_yaml_reads_back_through_the_build(tmp_path):
    from rnnbook.book import params

    values = {"seeds": [0, 1], "lag": None, "learning_rate": 0.001, "rnn_configs": ["gru", "lstm"]}
    path = tmp_path / "relu.params.yaml"
    path.write_text(provenance.params_yaml(values))
    assert params.load_yaml_file(path) == values


def test_params_yaml_refuses_objects():
    with pytest.raises(provenance.ProvenanceError, match="'model'.*plain data"):
        provenance.params_yaml({"model": object()})


def test_block_shows_every_parameter_in_full_and_how_to_rebuild():
    configs = [f"relu-config-number-{i}" for i in range(12)]
    text = provenance.markdown({"rnn_configs": configs, "seed": 0})
    assert f"`rnn_configs = {configs!r}`" in text and "..." not in text
    assert "`rnnbook build -f RNNBOOKPAGENAME.params.yaml`" in text
    assert 'href="RNNBOOKPAGENAME.params.yaml"' in text
    assert "**Git commit:**" in text


def test_a_chapter_rebuilt_from_its_params_yaml_glues_the_same_values(quick_book, tmp_path):
    """Download a page's params.yaml from the quick build, rebuild that chapter from it (with
    the quick preset) in a fresh build directory, and compare every glued text value."""
    from rnnbook.book import build

    docname = "chapters/task_and_model"
    yaml_file = quick_book.html_dir / "chapters" / "task_and_model.params.yaml"
    assert yaml_file.is_file(), quick_book.output
    downloaded = tmp_path / "task_and_model.params.yaml"
    downloaded.write_text(yaml_file.read_text())
    chapters = build.find_chapters(ROOT)
    chapter = next(c for c in chapters if c.docname == docname)
    assert set(yaml.safe_load(downloaded.read_text())) == set(chapter.defaults), "exactly its parameters"
    resolved = build.resolve_parameters(ROOT, chapters, "quick", [downloaded], [])
    job = next(j for j in build.plan(ROOT, chapters, resolved) if j.chapter.docname == docname)
    out = build.execute(ROOT, job, tmp_path / "_build", progress=False)
    import nbformat

    def texts(nb):  # every glued number, phrase and table (figures' pixels aside)
        return {key: sorted(str(v) for m, v in bundle.items() if m.endswith(("text/plain", "text/markdown")))
                for key, bundle in glued(nb).items() if not any(m.endswith("image/png") for m in bundle)}

    before, after = texts(quick_book.notebook(docname)), texts(nbformat.read(out, as_version=4))
    assert before and before == after
