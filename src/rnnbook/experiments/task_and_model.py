"""The chapter "The task and the model": the digit bank, the sequence task of this run, its
example sequences, and the CNN + SimpleRNN model with its sizes and Keras' defaults.

:func:`results` returns every glued value of the chapter (numbers, and Markdown phrases
as strings), section by section, and the data behind its figure; :func:`fig_example_sequences` draws it::

    res = results(task="recall", seq_len=20, lag=None, n_train=2000, n_val=500, n_test=500,
                  n_examples=4, units=64, activation="tanh", seed=0)
    res.model["params_total"], fig_example_sequences(res.task_data, res.examples)
"""
from __future__ import annotations

import dataclasses

import keras
import matplotlib.pyplot as plt
import numpy as np

from rnnbook import data, models
from rnnbook.experiments.common import keras_simple_rnn_defaults

#: The chapter's parameters, as its ``parameters`` cell names them.
PARAMS = ("task", "seq_len", "lag", "n_train", "n_val", "n_test", "n_examples", "units", "activation", "seed")


@dataclasses.dataclass
class Results:
    """The chapter's glued values, one dict per section (glue key -> number, or Markdown
    text), and what its figure draws."""

    bank: dict                   # the digit bank (bank_values)
    task: dict                   # the task of this run (task_values)
    model: dict                  # the model and Keras' defaults (model_values, keras_default_values)
    task_data: data.TaskData
    examples: data.SequenceSet   # the first test sequences, shown in the figure


def bank_values() -> dict:
    """Size of the digit bank, images per digit, grey levels and the bank's split."""
    images, digits = data.digit_bank()
    per_digit = np.bincount(digits, minlength=10)
    split = data.bank_split()
    return {"grey_levels": len(np.unique(images)), "n_images": int(images.shape[0]),
            "image_side": int(images.shape[1]), "min_per_digit": int(per_digit.min()),
            "max_per_digit": int(per_digit.max()), "bank_train": len(split["train"]),
            "bank_val": len(split["val"]), "bank_test": len(split["test"])}


def label_meaning(task: str, parameters: dict) -> str:
    """What a sequence's label is, in words (``parameters``: the task manifest's)."""
    if task == "recall":
        first = " (the first frame)" if parameters["lag"] == parameters["seq_len"] - 1 else ""
        return f"the digit shown {parameters['lag']} step(s) before the last frame{first}"
    return f"how many of the frames show the digit {parameters['target_digit']} (0 to {parameters['max_count']})"


def task_values(td: data.TaskData, task: str) -> dict:
    """The run's task: its name, the meaning of a label, the split sizes and chance (%)."""
    p = td.manifest["parameters"]
    return {"task_name": f"`{task}`", "seq_len_used": p["seq_len"], "n_train_used": len(td.train),
            "n_val_used": len(td.val), "n_test_used": len(td.test), "num_classes": td.num_classes,
            "chance": 100 * td.chance, "task_label": label_meaning(task, p)}


def keras_default_values() -> dict:
    """The installed Keras' SimpleRNN defaults as the prose names them (class names)."""
    d = keras_simple_rnn_defaults()

    def class_name(initializer):
        return type(keras.initializers.get(initializer)).__name__

    return {"keras_default_activation": f"`{d['activation']}`",
            "keras_default_recurrent_init": f"`{class_name(d['recurrent_initializer'])}`",
            "keras_default_kernel_init": f"`{class_name(d['kernel_initializer'])}`",
            "keras_version": f"`{keras.__version__}`"}


def model_values(model: models.SequenceClassifier, examples: data.SequenceSet, units: int, activation: str,
                 num_classes: int) -> dict:
    """The model's layers, parameter counts and the shapes of a batch going through it."""
    convs = [layer for layer in model.encoder.layers if isinstance(layer, keras.layers.Conv2D)]
    frames = examples.frames()
    logits = model(frames)
    return {
        "encoder_layers": ", ".join(f"`Conv2D({c.filters}, 3x3, relu)`" for c in convs)
        + ", `MaxPooling2D(2)`, `Flatten`",
        "rnn_layer": f"`SimpleRNN({units}, activation={activation!r})`",
        "head_layer": f"`Dense({num_classes})` on $h_T$",
        "params_encoder": model.encoder.count_params(), "params_head": model.head.count_params(),
        "n_features": int(model.encoder.output_shape[-1]), "units_used": units,
        "params_total": model.count_params(), "params_rnn": model.rnn.count_params(),
        "params_rnn_share": 100 * model.rnn.count_params() / model.count_params(),
        "logits_shape": f"`{tuple(int(s) for s in logits.shape)}`",
        "frames_shape": f"`{tuple(int(s) for s in frames.shape)}`",
    }


def results(task, seq_len, lag, n_train, n_val, n_test, n_examples, units, activation, seed) -> Results:
    """Every value the chapter glues, for one run of the task and one seeded model."""
    td = data.make_task(task, seq_len=seq_len, lag=lag, n_train=n_train, n_val=n_val, n_test=n_test, seed=seed)
    examples = td.test.subset(slice(0, n_examples))
    model = models.build_model(units=units, activation=activation, num_classes=td.num_classes, seed=seed)
    return Results(bank_values(), task_values(td, task),
                   {**model_values(model, examples, units, activation, td.num_classes), **keras_default_values()},
                   td, examples)


def marked_frames(td: data.TaskData, examples: data.SequenceSet) -> np.ndarray:
    """``(sequences, frames)`` booleans: the frames a label depends on (for ``recall`` the
    frame to remember, for ``count`` the frames showing the target digit)."""
    p = td.manifest["parameters"]
    n_rows, n_cols = examples.index.shape[:2]
    if p["task"] == "recall":
        return np.broadcast_to(np.arange(n_cols) == n_cols - 1 - p["lag"], (n_rows, n_cols))
    return examples.bank_digits[examples.index] == p["target_digit"]


def fig_example_sequences(td: data.TaskData, examples: data.SequenceSet):
    """The example sequences, one per row, frames left to right, each row labelled; red
    boxes mark the frames the label depends on (:func:`marked_frames`)."""
    frames = examples.frames()[..., 0]
    n_rows, n_cols = frames.shape[:2]
    marked = marked_frames(td, examples)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(max(4.0, 0.42 * n_cols + 1.2), 0.55 * n_rows + 0.5),
                             squeeze=False, gridspec_kw={"wspace": 0.08, "hspace": 0.25})
    for i in range(n_rows):
        for j in range(n_cols):
            ax = axes[i, j]
            ax.imshow(frames[i, j], cmap="gray_r", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(bool(marked[i, j]))
                spine.set_color("tab:red")
                spine.set_linewidth(2)
        axes[i, 0].set_ylabel(f"label {examples.labels[i]}", rotation=0, ha="right", va="center")
    for j in range(n_cols):
        axes[0, j].set_title(str(j), fontsize=7)
    fig.supxlabel("frame t (0 = first, shown above each column)", fontsize=9)
    plt.close(fig)
    return fig
