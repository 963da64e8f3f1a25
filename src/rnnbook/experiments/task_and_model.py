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


#: Frames per line of the example figure: a longer sequence wraps onto more lines, so the
#: figure stays within the book's content width at any sequence length.
FRAMES_PER_LINE = 20
#: Width of one frame in the example figure (inches), and of the figure at most.
FRAME_INCHES, MAX_FIGURE_INCHES = 0.42, 9.0


def example_frames(td: data.TaskData, examples: data.SequenceSet):
    """The data behind :func:`fig_example_sequences`: one row per frame drawn, with the
    sequence, its label, the frame's position ``t``, the digit it shows, its bank image and
    whether the label depends on it."""
    import pandas as pd

    marked = marked_frames(td, examples)
    n_rows, n_cols = marked.shape
    task = td.manifest["parameters"]["task"]
    return pd.DataFrame([{"task": task, "sequence": i, "label": int(examples.labels[i]), "t": j,
                          "digit_shown": int(examples.bank_digits[examples.index[i, j]]),
                          "bank_image": int(examples.index[i, j]), "label_depends_on_frame": bool(marked[i, j])}
                         for i in range(n_rows) for j in range(n_cols)])


def fig_example_sequences(td: data.TaskData, examples: data.SequenceSet):
    """The example sequences, one per row, frames left to right, each row labelled; red
    boxes mark the frames the label depends on (:func:`marked_frames`). A sequence longer
    than :data:`FRAMES_PER_LINE` frames wraps onto several lines (each frame then titled
    with its ``t``)."""
    frames = examples.frames()[..., 0]
    n_seq, n_frames = frames.shape[:2]
    marked = marked_frames(td, examples)
    per_line = min(n_frames, FRAMES_PER_LINE)
    lines = -(-n_frames // per_line)
    cell = min(FRAME_INCHES, (MAX_FIGURE_INCHES - 1.2) / per_line)
    fig, axes = plt.subplots(n_seq * lines, per_line, squeeze=False,
                             figsize=(cell * per_line + 1.2, (cell + 0.13) * n_seq * lines + 0.5),
                             gridspec_kw={"wspace": 0.08, "hspace": 0.25 if lines == 1 else 0.45})
    for ax in axes.flat:
        ax.set_visible(False)
    for i in range(n_seq):
        for j in range(n_frames):
            ax = axes[i * lines + j // per_line, j % per_line]
            ax.set_visible(True)
            ax.imshow(frames[i, j], cmap="gray_r", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(bool(marked[i, j]))
                spine.set_color("tab:red")
                spine.set_linewidth(2)
            if lines > 1 or i == 0:
                ax.set_title(str(j), fontsize=7)
        axes[i * lines, 0].set_ylabel(f"label {examples.labels[i]}", rotation=0, ha="right", va="center")
    fig.supxlabel("frame t (0 = first, shown above each frame)" if lines > 1
                  else "frame t (0 = first, shown above each column)", fontsize=9)
    plt.close(fig)
    return fig


def plan(params: dict) -> list:
    """Runs this chapter trains through :func:`rnnbook.sweeps.run_sweep`: none (for
    ``rnnbook build --dry-run``)."""
    return []
