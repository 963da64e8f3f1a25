"""The chapter "The task and the model" (:mod:`rnnbook.experiments.task_and_model`) and the
glue helpers every chapter uses (:mod:`rnnbook.book.pages`)."""
from __future__ import annotations

import numpy as np
import pytest

import rnnbook  # noqa: F401  (quiets TensorFlow first)
from rnnbook.book import pages
from rnnbook.experiments import task_and_model

SMALL = dict(seq_len=5, lag=None, n_train=8, n_val=4, n_test=4, n_examples=2, units=8, activation="tanh", seed=0)


@pytest.mark.parametrize("task", ["recall", "count"])
def test_results_describe_the_run(task):
    res = task_and_model.results(task=task, **SMALL)
    assert res.task["seq_len_used"] == 5 and res.task["n_test_used"] == 4 and res.task["task_name"] == f"`{task}`"
    m = res.model
    assert m["params_total"] == m["params_encoder"] + m["params_rnn"] + m["params_head"]
    assert m["frames_shape"].startswith("`(2, 5, 8, 8") and m["logits_shape"] == f"`(2, {res.task['num_classes']})`"
    assert m["keras_default_recurrent_init"] == "`Orthogonal`" and m["keras_default_activation"] == "`tanh`"
    assert res.bank["bank_train"] + res.bank["bank_val"] + res.bank["bank_test"] == res.bank["n_images"]
    marked = task_and_model.marked_frames(res.task_data, res.examples)
    assert marked.shape == (2, 5)
    if task == "recall":  # the first frame, in every sequence
        assert marked[:, 0].all() and not marked[:, 1:].any()
        assert res.task["task_label"].endswith("(the first frame)")
    fig = task_and_model.fig_example_sequences(res.task_data, res.examples)
    drawn = [ax for ax in fig.axes if ax.get_visible()]
    assert len(drawn) == 2 * 5 and all(len(ax.images) == 1 for ax in drawn)
    boxed = sum(ax.spines["left"].get_visible() for ax in drawn)
    assert boxed == int(marked.sum())
    frames = task_and_model.example_frames(res.task_data, res.examples)
    assert len(frames) == 2 * 5 and list(frames["t"][:5]) == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(frames["label_depends_on_frame"].to_numpy(), marked.ravel())
    np.testing.assert_array_equal(frames["label"].to_numpy(), np.repeat(res.examples.labels[:2], 5))


def test_long_sequences_wrap_within_the_content_width():
    res = task_and_model.results(task="recall", **{**SMALL, "seq_len": 45})
    fig = task_and_model.fig_example_sequences(res.task_data, res.examples)
    drawn = [ax for ax in fig.axes if ax.get_visible()]
    assert len(drawn) == 2 * 45  # every frame, on 3 lines of at most 20 per sequence
    assert len(fig.axes) == 2 * 3 * 20
    assert fig.get_size_inches()[0] <= task_and_model.MAX_FIGURE_INCHES
    assert [ax.get_title() for ax in drawn[:3]] == ["0", "1", "2"] and drawn[44].get_title() == "44"


def test_chapter_params_names_what_is_missing():
    assert pages.chapter_params({"a": 1, "b": [2]}, ("b",)) == {"b": [2]}
    with pytest.raises(NameError, match="seeds.*expected: a, seeds"):
        pages.chapter_params({"a": 1}, ("a", "seeds"))


def test_glue_values_glues_words_as_markdown(monkeypatch):
    import myst_nb

    glued = {}
    monkeypatch.setattr(myst_nb, "glue", lambda key, value, display=True: glued.__setitem__(key, value))
    pages.glue_values({"n": 3, "word": "**yes**"})
    pages.pct("share", 0.25)
    assert glued["n"] == 3 and glued["word"].data == "**yes**" and glued["share"] == 25.0
    pages.glue_num("missing", float("nan"))
    assert np.isnan(glued["missing"])
