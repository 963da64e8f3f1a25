"""The data behind figures (rnnbook.book.figures), the Sphinx extension that publishes it
(rnnbook.book.site), and legible figures (one style per configuration, no overlapping ticks)."""
import io
import json

import matplotlib

matplotlib.use("Agg")

import matplotlib.colors as mcolors  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402

from conftest import FRONT, ROOT  # noqa: E402
from rnnbook import plots  # noqa: E402
from rnnbook.book import figures, site  # noqa: E402

RUNS = pd.DataFrame({
    "label": ["tanh + orthogonal", "GRU", "tanh + orthogonal", "GRU"],
    "lag": [2, 2, 5, 5], "seed": [0, 0, 1, 1], "accuracy": [0.9, 0.95, 0.4, 0.8],
    "history": [[0.1, 0.2]] * 4,            # not a scalar: left out of the runs CSV
    "diverged": [False, False, True, False],
})


# ----------------------------------------------------------------------------- data


def test_csv_has_header_and_one_row_per_point():
    text = figures.csv_text(RUNS[["label", "lag", "accuracy"]])
    rows = list(pd.read_csv(io.StringIO(text)).itertuples(index=False))
    assert text.splitlines()[0] == "label,lag,accuracy"
    assert len(rows) == len(RUNS) and rows[1] == ("GRU", 2, 0.95)


def test_tidy_keeps_a_meaningful_index_as_columns():
    summary = RUNS.groupby(["label", "lag"])["accuracy"].mean()
    assert list(figures.tidy(summary).columns) == ["label", "lag", "accuracy"]


@pytest.mark.parametrize("bad", [pd.DataFrame(), [], {}])
def test_empty_data_is_refused(bad):
    with pytest.raises(figures.FigureDataError, match="at least one row"):
        figures.tidy(bad)


@pytest.mark.parametrize("key", ["Fig_1", "fig 1", "", "-fig", None])
def test_bad_keys_name_the_rule(key):
    with pytest.raises(figures.FigureDataError, match="lowercase letters, digits and hyphens"):
        figures.check_key(key)


def test_runs_csv_keeps_every_scalar_field():
    assert list(figures.scalar_columns(RUNS).columns) == ["label", "lag", "seed", "accuracy", "diverged"]


def test_alt_text_reads_the_axes():
    fig = plots.line_with_band(RUNS, x="lag", y="accuracy", hue="label")
    alt = figures.alt_text(fig)
    assert "training accuracy against" in alt and "time lag" in alt
    assert "tanh + orthogonal" in alt and "GRU" in alt


# ----------------------------------------------------------------------------- the extension


def test_tokens_are_filled_with_the_page():
    text = f"{figures.DOC_TOKEN}.html#fig-x and {figures.PAGE_TOKEN}.params.yaml"
    assert site.fill_tokens(text, "chapters/relu") == "chapters/relu.html#fig-x and relu.params.yaml"


@pytest.mark.parametrize("caption, alt", [
    ("The same measurement as Fig. 3, per gain. Data (CSV)", "The same measurement as Fig. 3, per gain."),
    ("Top: the size (e.g. 2x). Below: more", "Top: the size (e.g. 2x)."),
    ("No full stop at all", "No full stop at all"),
])
def test_alt_text_from_a_caption_is_its_first_sentence(caption, alt):
    assert site.first_sentence(caption) == alt


def test_published_files_land_beside_the_page_or_at_the_root(tmp_path):
    class App:  # what published_files reads of a Sphinx app
        class env:
            class mystnb_config:
                output_folder = str(tmp_path)

    glue = {
        "rnnbook-file:fig-x.csv": {"data": {figures.FILE_MIME: {"name": "fig-x.csv", "text": "a\n1\n"}}},
        "rnnbook-file:p": {"data": {figures.FILE_MIME: {"name": f"{figures.PAGE_TOKEN}.params.yaml",
                                                        "text": "seed: 0\n"}}},
        "rnnbook-file:h": {"data": {figures.FILE_MIME: {"name": "/_static/h.png", "base64": "AAE="}}},
        "fig-x": {"data": {"text/plain": "<Figure>"}},
    }
    (tmp_path / "chapters").mkdir()
    (tmp_path / "chapters" / "relu.glue.json").write_text(json.dumps(glue))
    assert site.published_files(App, "chapters/relu") == {
        "chapters/fig-x.csv": b"a\n1\n", "chapters/relu.params.yaml": b"seed: 0\n", "_static/h.png": b"\x00\x01"}
    assert site.published_files(App, "chapters/other") == {}


TOY_CHAPTER = FRONT + '''
# Toy

```{code-cell} ipython3
:tags: [parameters]

seeds = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25]
```

```{code-cell} ipython3
:tags: [remove-cell]

import pandas as pd
from rnnbook import plots
from rnnbook.book import figures, provenance

runs = pd.DataFrame({"label": ["tanh + orthogonal", "GRU"] * 2, "lag": [2, 2, 5, 5], "seed": [0, 0, 1, 1],
                     "accuracy": [0.9, 0.95, 0.4, 0.8]})
fig = plots.line_with_band(runs, x="lag", y="accuracy", hue="label")
figures.glue_figure("fig-toy", fig, runs, headline=True)
figures.write_runs_csv("toy", runs)
```

```{glue:figure} fig-toy
:name: fig-toy

Accuracy against lag. {glue:md}`fig-toy-data`
```

{glue:md}`toy-runs`

```{code-cell} ipython3
:tags: [remove-input]

provenance.block(globals())
```
'''


@pytest.fixture(scope="module")
def toy_site(tmp_path_factory):
    """A one-chapter book with the real _config.yml (strict build)."""
    from rnnbook.book import build

    root = tmp_path_factory.mktemp("toy") / "book"
    (root / "chapters").mkdir(parents=True)
    (root / "presets").mkdir()
    (root / "presets" / "default.yaml").write_text("{}\n")
    for name in ("_config.yml", "CITATION.cff", "references.bib"):
        (root / name).write_text((ROOT / name).read_text())
    (root / "_toc.yml").write_text("format: jb-book\nroot: index\nchapters:\n  - file: chapters/toy\n")
    (root / "index.md").write_text("# Toy book\n\nA toy book whose first paragraph describes it.\n")
    (root / "chapters" / "toy.md").write_text(TOY_CHAPTER)
    out = io.StringIO()
    code = build.build(build.Options(root=root, progress=False, build_dir=root / "_build"), out=out)
    assert code == 0, out.getvalue()
    return root / "_build" / "html"


def test_toy_site_publishes_data_params_alt_and_citation(toy_site):
    page = (toy_site / "chapters" / "toy.html").read_text()
    data = pd.read_csv(toy_site / "chapters" / "fig-toy.csv")
    assert list(data.columns) == ["label", "lag", "seed", "accuracy"] and len(data) == 4
    assert 'href="fig-toy.csv"' in page and 'href="toy.runs.csv"' in page
    assert (toy_site / "chapters" / "toy.runs.csv").read_text().startswith("label,lag,seed,accuracy\n")
    import yaml

    assert yaml.safe_load((toy_site / "chapters" / "toy.params.yaml").read_text()) == {"seeds": list(range(26))}
    import re

    text = re.sub(r"<[^>]+>", "", page)
    assert "rnnbook build -f toy.params.yaml" in text and 'href="toy.params.yaml"' in page
    assert "25]" in page and "..." not in page.split("Provenance")[-1].split("Git commit")[0]
    assert "chapters/toy.html#fig-toy (commit" in page
    assert figures.DOC_TOKEN not in page and figures.PAGE_TOKEN not in page
    assert 'alt="Figure: training accuracy against time lag' in page
    assert (toy_site / "_static" / "rnnbook-headline.png").read_bytes()[:4] == b"\x89PNG"
    index = (toy_site / "index.html").read_text()
    assert 'property="og:description" content="A toy book whose first paragraph' in index
    base = (yaml.safe_load((ROOT / "_config.yml").read_text()).get("html") or {}).get("baseurl") or ""
    base = base if not base or base.endswith("/") else base + "/"
    assert f'property="og:image" content="{base}_static/rnnbook-headline.png"' in index  # absolute with a base URL
    assert 'property="og:site_name" content="tanh, ReLU and gradient clipping' in index
    assert f'property="og:image" content="{base}_images/' in page or 'property="og:image" content="../_images/' in page


def test_toy_site_needs_no_other_host(toy_site):
    import re

    for html in toy_site.rglob("*.html"):
        text = html.read_text()
        tags = [t for t in re.findall(r"<(?:script|link|img)[^>]*>", text) if 'rel="canonical"' not in t]  # not a load
        remote = [u for t in tags for u in re.findall(r'(?:src|href)="((?:https?:)?//[^"]+)"', t)]
        assert not remote, f"{html.name} loads {remote}"
        assert not re.search(r"cdn|unpkg|jsdelivr", text, re.I), f"{html.name} names a CDN"
    assert (toy_site / "_static" / "mathjax" / "tex-chtml.js").is_file()


# ----------------------------------------------------------------------------- legible figures


def _lab(color):
    """CIELAB (D65) of a colour, to measure how far apart two colours look."""
    rgb = np.array(mcolors.to_rgb(color))
    rgb = np.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ rgb
    f = np.cbrt(np.maximum(xyz / [0.95047, 1.0, 1.08883], 0.008856))
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def _delta_e(a, b):
    return float(np.linalg.norm(_lab(a) - _lab(b)))


def test_every_configuration_has_its_own_colour_marker_and_line_style():
    styles = plots.CONFIG_STYLES
    for field in ("color", "marker", "linestyle"):
        values = [str(s[field]) for s in styles.values()]
        assert len(set(values)) == len(values), f"two configurations share a {field}"
    colors = [s["color"] for s in styles.values()]
    closest = min(_delta_e(a, b) for i, a in enumerate(colors) for b in colors[i + 1:])
    assert closest > 25, f"two configuration colours are only {closest:.0f} CIELAB units apart"
    assert plots.palette(["GRU", "ReLU + orthogonal"]) == {"GRU": "#E69F00", "ReLU + orthogonal": "#D55E00"}


def test_config_style_names_the_valid_labels():
    assert plots.config_style("LSTM") == {"color": "#000000", "marker": "X", "linestyle": (0, (1, 1))}
    with pytest.raises(ValueError, match="'tanh \\+ orthogonal'.*'LSTM'"):
        plots.config_style("relu-identity")


def test_markers_and_dashes_are_distinct_for_new_labels_too():
    labels = ["GRU", "my idea", "another idea"]
    for mapping in (plots.markers(labels), plots.dashes(labels)):
        assert len(set(map(str, mapping.values()))) == len(labels)


def test_lines_carry_the_configuration_markers():
    fig = plots.line_with_band(RUNS, x="lag", y="accuracy", hue="label")
    shown = {line.get_label(): line.get_marker() for line in fig.axes[0].get_legend().get_lines()}
    assert shown["tanh + orthogonal"] == "o" and shown["GRU"] == "P"
    plt.close(fig)


@pytest.mark.parametrize("width", [4.0, 5.5, 7.0])
def test_fitted_tick_labels_never_overlap(width):
    """The count-task figure's labels (each configuration with its divergence count on a second
    line) at a panel width the book's pages show."""
    plots.set_style()
    labels = [f"{lab}\n{k}/3 diverged" for k, lab in enumerate(plots.CONFIG_STYLES)]
    fig, ax = plt.subplots(figsize=(width, 3.0))
    ax.bar(range(len(labels)), 1)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels([lab.replace("\n", " ") for lab in labels])
    assert plots.tick_label_overlaps(fig), "the check finds overlapping labels"
    plots.fit_tick_labels(ax)
    assert plots.tick_label_overlaps(fig) == []
    assert all(t.get_fontsize() >= 7 for t in ax.get_xticklabels())
    plt.close(fig)
