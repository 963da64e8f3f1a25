"""The classic synthetic long-memory benchmarks: the adding problem and the temporal-order task.

Every batch is fresh: :func:`batch_rng` gives one ``numpy.random.Generator`` per
``(seed, stream, batch index)``, so batch ``k`` of seed ``s`` is the same wherever
and whenever it is drawn, and no two batches share sequences by construction.
Inputs are float32 ``(batch, T, features)``; targets are float32 means (adding) or
int64 class labels (temporal order).

* **Adding problem**: channel 0 holds numbers drawn uniformly from [0, 1), channel 1 is a
  marker with exactly one 1 in the first half and one 1 in the second half (the marker
  placement of Le, Jaitly & Hinton 2015 and Arjovsky et al. 2016); the target is the
  *mean* of the two marked numbers, (X1 + X2) / 2, as in Pascanu et al.'s code
  (github.com/pascanur/trainingRNNs, ``addition.py``), the scale their 0.04 error rule is
  written for. Le et al. state the target as the sum, :data:`ADDING_SUM_SCALE` times larger,
  so their squared errors are 4 times these. Predicting the expected target (0.5 here, 1 on
  the sum scale: Le et al.'s "predict 1") always gives MSE = Var((U1 + U2) / 2)
  (:data:`ADDING_BASELINE_MSE`, from :func:`adding_deviation_moment`). (Pascanu et al.'s code
  places the marks differently, the first in the first 10 % of the sequence and the second in
  10 % to 50 %, with lengths T to 1.1 T; Hochreiter & Schmidhuber's 1997 original uses values
  in [-1, 1] and the target 0.5 + (X1 + X2) / 4.)
* **Temporal order**, two variants (:data:`TEMPORAL_ORDER_VARIANTS`):

  - ``"hochreiter1997"``, task 6a: eight one-hot symbols; the sequence starts with E,
    ends with the trigger symbol B, and is otherwise random distractors a, b, c, d
    except at positions t1 in [10, 20] and t2 in [50, 60] (1-based), which hold X or Y.
    The paper's sequences are 100 to 110 long; here T is the caller's and the position
    windows scale with it, [T/10, 2T/10] and [5T/10, 6T/10], so T = 100 gives the
    paper's windows exactly.
  - ``"pascanu2013"``: six one-hot symbols, A and B (channels 0, 1) and distractors
    c, d, e, f; no start or end symbol; the first relevant symbol at a 0-based position
    in [T/10, 2T/10), the second in [5T/10, 6T/10), as in their code
    (github.com/pascanur/trainingRNNs, ``tempOrder.py``).

  Classes are ``2 * first + second`` (first, second in {0, 1} for X/Y or A/B): XX or AA
  is 0, XY or AB 1, YX or BA 2, YY or BB 3 (our numbering; the papers' class names are
  in :data:`CLASS_NAMES`; Pascanu's code numbers them ``first + 2 * second``, a relabelling).

Example:
    >>> task = SyntheticTask("adding", seq_len=20)
    >>> x, y = task.batch(seed=0, index=0, batch_size=4)
    >>> x.shape, x.dtype.name, y.shape
    ((4, 20, 2), 'float32', (4,))
"""
from __future__ import annotations

import dataclasses

import numpy as np

TASKS = ("adding", "temporal_order")
TEMPORAL_ORDER_VARIANTS = ("hochreiter1997", "pascanu2013")
STREAMS = ("train", "val", "test")

#: The sum of the two marked numbers (Le et al. 2015's target) is this many times the mean (the target here).
ADDING_SUM_SCALE = 2.0


def adding_deviation_moment(k: int, scale: float = 1.0) -> float:
    """E[(Y - E[Y])^k] for even ``k`` of the adding target Y = ``scale`` x (U1 + U2) / 2 (``scale=1``:
    the mean, the target here; :data:`ADDING_SUM_SCALE`: the sum). The sum's deviation S - 1 has
    the triangular density 1 - |x| on [-1, 1], so E[(S - 1)^k] = 2 / ((k + 1)(k + 2)).

    Example:
        >>> round(adding_deviation_moment(2), 4), round(adding_deviation_moment(2, ADDING_SUM_SCALE), 4)
        (0.0417, 0.1667)
    """
    if k < 0 or k % 2:
        raise SyntheticError(f"k={k!r} must be an even integer >= 0")
    return 2.0 / ((k + 1) * (k + 2)) * (scale / ADDING_SUM_SCALE) ** k


#: The expected adding target, E[(U1 + U2) / 2]: the constant a model that learnt nothing predicts
#: (1 on the sum scale: Le et al.'s "predict 1 always").
ADDING_CONSTANT = 0.5
#: MSE of always predicting :data:`ADDING_CONSTANT`: Var((U1 + U2) / 2) = 1/24 (1/6 on the sum scale).
ADDING_BASELINE_MSE = adding_deviation_moment(2)
#: Standard deviation of that predictor's squared error per sequence (the spread of its measured MSE).
ADDING_BASELINE_SD = (adding_deviation_moment(4) - adding_deviation_moment(2) ** 2) ** 0.5
#: Pascanu et al.'s code counts an adding-problem sequence as wrong when its squared error on the
#: mean exceeds this (``RNN.py``, ``lastLinear``).
ADDING_WRONG_SQUARED_ERROR = 0.04
#: Share of adding-problem sequences "correct" by that rule when always predicting the expected
#: target: P(|Y - 1/2| <= 0.2) = 1 - (1 - 2 x 0.2) ** 2 for the triangular mean Y (the chance
#: level of the criterion).
ADDING_BASELINE_ACCURACY = 1.0 - (1.0 - ADDING_SUM_SCALE * ADDING_WRONG_SQUARED_ERROR ** 0.5) ** 2
#: Pascanu et al. (2013, section 4.1.1): a run succeeds when under 1 % of fresh sequences are misclassified ...
SOLVED_ERROR_RATE = 0.01
#: ... out of this many freshly generated sequences.
SOLVED_EVAL_SEQUENCES = 10_000
TEMPORAL_ORDER_CLASSES = 4

#: Symbols in one-hot channel order, per variant.
SYMBOLS = {
    "hochreiter1997": ("X", "Y", "a", "b", "c", "d", "E", "B"),
    "pascanu2013": ("A", "B", "c", "d", "e", "f"),
}
#: Class names in label order; H&S call the classes Q, R, S, U (XX, XY, YX, YY).
CLASS_NAMES = {
    "hochreiter1997": ("XX", "XY", "YX", "YY"),
    "pascanu2013": ("AA", "AB", "BA", "BB"),
}
_DISTRACTORS = (2, 3, 4, 5)  # channels of the four distractor symbols in both variants
_START, _TRIGGER = 6, 7      # hochreiter1997: E opens the sequence, B closes it
#: Shortest T each task accepts (the position windows must be non-empty and disjoint).
MIN_SEQ_LEN = {"adding": 2, "hochreiter1997": 20, "pascanu2013": 10}


class SyntheticError(ValueError):
    """A synthetic-task request that cannot be honoured; the message names the argument and the valid range."""


def _check_int(name: str, value, low: int, rule: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise SyntheticError(f"{name}={value!r} must be an integer >= {low}{rule}")
    return int(value)


def _check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise SyntheticError(f"{name}={value!r} is not supported; choose one of {', '.join(choices)}")


def _check_rng(rng) -> None:
    if not isinstance(rng, np.random.Generator):
        raise SyntheticError(f"rng must be a numpy.random.Generator (e.g. batch_rng(seed, stream, k)); "
                             f"got {type(rng).__name__}")


def batch_rng(seed: int, stream: str, index: int) -> np.random.Generator:
    """The generator of batch ``index`` of ``stream`` (train / val / test) for ``seed``."""
    _check_int("seed", seed, 0)
    _check_choice("stream", stream, STREAMS)
    _check_int("index", index, 0)
    return np.random.default_rng([int(seed), STREAMS.index(stream), int(index)])


# ----------------------------------------------------------------------------- adding problem


def adding_problem(rng: np.random.Generator, batch_size: int, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """One batch of the adding problem: ``x (B, T, 2)`` float32 and the targets ``y (B,)`` float32,
    the mean of the two marked numbers.

    Channel 0: numbers uniform in [0, 1). Channel 1: a 1 at one position drawn uniformly
    from the first half ``[0, T // 2)`` and one from the second half ``[T // 2, T)``, else 0
    (paper: one mark in each half; the split of an odd T is our choice).
    """
    _check_rng(rng)
    batch_size = _check_int("batch_size", batch_size, 1)
    seq_len = _check_int("seq_len", seq_len, MIN_SEQ_LEN["adding"], " for the adding problem (one mark per half)")
    half = seq_len // 2
    values = rng.random((batch_size, seq_len), dtype=np.float64)
    first = rng.integers(0, half, size=batch_size)
    second = rng.integers(half, seq_len, size=batch_size)
    rows = np.arange(batch_size)
    marks = np.zeros((batch_size, seq_len))
    marks[rows, first] = 1.0
    marks[rows, second] = 1.0
    x = np.stack([values, marks], axis=-1).astype(np.float32)
    y = (x[rows, first, 0].astype(np.float64) + x[rows, second, 0]) / ADDING_SUM_SCALE  # the inputs the network sees
    return x, y.astype(np.float32)


def constant_mse(targets: np.ndarray, value: float = ADDING_CONSTANT) -> float:
    """MSE of predicting ``value`` for every target (with the default, :data:`ADDING_BASELINE_MSE` measured)."""
    return float(np.mean((np.asarray(targets, np.float64) - float(value)) ** 2))


def adding_error_rate(predictions: np.ndarray, targets: np.ndarray) -> float:
    """Share of sequences whose squared error exceeds :data:`ADDING_WRONG_SQUARED_ERROR` (Pascanu's code)."""
    p, t = np.asarray(predictions, np.float64).reshape(-1), np.asarray(targets, np.float64).reshape(-1)
    if p.shape != t.shape:
        raise SyntheticError(f"{p.size} predictions for {t.size} targets")
    return float(np.mean(~((p - t) ** 2 <= ADDING_WRONG_SQUARED_ERROR)))  # NaN counts as wrong


# ----------------------------------------------------------------------------- temporal order


def relevant_windows(seq_len: int, variant: str = "pascanu2013") -> tuple[range, range]:
    """0-based positions the first and the second relevant symbol are drawn from (uniformly)."""
    _check_choice("variant", variant, TEMPORAL_ORDER_VARIANTS)
    seq_len = _check_int("seq_len", seq_len, MIN_SEQ_LEN[variant], f" for temporal order ({variant})")
    tenth = seq_len // 10
    if variant == "hochreiter1997":  # 1-based [T/10, 2T/10] and [5T/10, 6T/10], inclusive
        return range(tenth - 1, 2 * seq_len // 10), range(5 * seq_len // 10 - 1, 6 * seq_len // 10)
    # pascanu2013, tempOrder.py: randint(int(.1 l)) + int(.1 l) and randint(int(.1 l)) + int(.5 l)
    return range(tenth, 2 * tenth), range(int(seq_len * 0.5), int(seq_len * 0.5) + tenth)


def temporal_order(rng: np.random.Generator, batch_size: int, seq_len: int,
                   variant: str = "pascanu2013") -> tuple[np.ndarray, np.ndarray]:
    """One batch of the temporal-order task: one-hot ``x (B, T, n_symbols)`` float32, labels ``(B,)`` int64.

    See the module docstring for both variants; the label is ``2 * first + second``.
    """
    _check_rng(rng)
    batch_size = _check_int("batch_size", batch_size, 1)
    first_window, second_window = relevant_windows(seq_len, variant)
    symbols = rng.choice(np.array(_DISTRACTORS), size=(batch_size, seq_len))
    rows = np.arange(batch_size)
    p1 = rng.integers(first_window.start, first_window.stop, size=batch_size)
    p2 = rng.integers(second_window.start, second_window.stop, size=batch_size)
    v1 = rng.integers(0, 2, size=batch_size)
    v2 = rng.integers(0, 2, size=batch_size)
    symbols[rows, p1] = v1
    symbols[rows, p2] = v2
    if variant == "hochreiter1997":
        symbols[:, 0] = _START
        symbols[:, -1] = _TRIGGER
    x = np.eye(len(SYMBOLS[variant]), dtype=np.float32)[symbols]
    return x, (2 * v1 + v2).astype(np.int64)


# ----------------------------------------------------------------------------- task


@dataclasses.dataclass(frozen=True)
class SyntheticTask:
    """One synthetic task at one sequence length: fresh seeded batches and fixed held-out sets.

    Attributes:
        name: ``"adding"`` or ``"temporal_order"``.
        seq_len: T, steps per sequence.
        variant: temporal order only, one of :data:`TEMPORAL_ORDER_VARIANTS`.
    """

    name: str
    seq_len: int
    variant: str = "pascanu2013"

    def __post_init__(self):
        _check_choice("task", self.name, TASKS)
        if self.name == "temporal_order":
            relevant_windows(self.seq_len, self.variant)  # checks variant and seq_len
        else:
            _check_int("seq_len", self.seq_len, MIN_SEQ_LEN["adding"], " for the adding problem (one mark per half)")

    @property
    def n_features(self) -> int:
        return 2 if self.name == "adding" else len(SYMBOLS[self.variant])

    @property
    def n_outputs(self) -> int:
        """Units of the read-out layer: 1 (regression) or the number of classes."""
        return 1 if self.name == "adding" else TEMPORAL_ORDER_CLASSES

    @property
    def is_regression(self) -> bool:
        return self.name == "adding"

    @property
    def num_classes(self) -> int:
        """The read-out width (:attr:`n_outputs`), under the name the image tasks use."""
        return self.n_outputs

    @property
    def chance(self) -> float:
        """Accuracy of the trivial answer: always 0.5 under Pascanu's 0.04 rule (adding), or 1/4."""
        return ADDING_BASELINE_ACCURACY if self.is_regression else 1.0 / TEMPORAL_ORDER_CLASSES

    @property
    def baseline(self) -> float:
        """The bar to beat: MSE of predicting 0.5 (adding) or chance accuracy (temporal order)."""
        return ADDING_BASELINE_MSE if self.is_regression else 1.0 / TEMPORAL_ORDER_CLASSES

    def draw(self, rng: np.random.Generator, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """One batch from ``rng``."""
        if self.is_regression:
            return adding_problem(rng, batch_size, self.seq_len)
        return temporal_order(rng, batch_size, self.seq_len, self.variant)

    def batch(self, seed: int, index: int, batch_size: int, stream: str = "train") -> tuple[np.ndarray, np.ndarray]:
        """Batch ``index`` of ``stream`` for ``seed``: the same arrays every time it is asked for."""
        return self.draw(batch_rng(seed, stream, index), batch_size)

    def stream(self, seed: int, stream: str = "train") -> "BatchStream":
        """Consecutive fresh batches 0, 1, 2, ... of ``stream`` for ``seed``."""
        batch_rng(seed, stream, 0)  # checks seed and stream now, not at the first batch
        return BatchStream(self, int(seed), stream)

    def held_out(self, seed: int, n: int, stream: str = "test", chunk: int = 1000) -> tuple[np.ndarray, np.ndarray]:
        """A fixed set of ``n`` sequences of ``stream`` (``val`` or ``test``), built from chunks of ``chunk``."""
        if stream == "train":
            raise SyntheticError("stream='train' is the fresh training stream; held-out sets use 'val' or 'test'")
        n = _check_int("n", n, 1)
        chunk = _check_int("chunk", chunk, 1)
        parts = [self.batch(seed, k, min(chunk, n - k * chunk), stream) for k in range(-(-n // chunk))]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


@dataclasses.dataclass
class BatchStream:
    """Fresh batches in order, the batch source of a training loop: ``next(batch_size) -> (x, y)``.

    Batch ``k`` is :meth:`SyntheticTask.batch` ``(seed, k, ...)``, so a run restarted at update
    ``k`` (``next_index = k``) sees exactly the batches it would have seen.
    """

    task: SyntheticTask
    seed: int
    name: str = "train"
    next_index: int = 0

    def next(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        batch = self.task.batch(self.seed, self.next_index, batch_size, self.name)
        self.next_index += 1
        return batch
