"""Image-sequence tasks built from the 1,797 real 8x8 digits that scikit-learn ships.

A sequence is ``T`` frames drawn from a bank of digit images; its label sits at a
controllable time lag:

* ``recall``: the label is the digit of the frame ``lag`` steps before the end
  (``lag = T - 1`` means "remember the first frame"); every other frame is a distractor.
* ``count``: the label is how many frames show a target digit, so the answer needs
  integration over the whole sequence.

Train, validation and test sequences draw from disjoint sets of source images.
Sequences are stored as indices into their split's image bank, so the CNN can run
once per distinct image (see :mod:`rnnbook.models`); :meth:`SequenceSet.frames`
gives the dense ``(N, T, H, W, C)`` array.

Example:
    >>> task = make_task("recall", seq_len=10, lag=9, n_train=64, n_val=16, n_test=16, data_dir=None)
    >>> task.train.frames().shape
    (64, 10, 8, 8, 1)
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from rnnbook.choices import TASKS, check_choice
from rnnbook.paths import data_root

SPLITS = ("train", "val", "test")
#: Share of the 1,797 source images given to each split (disjoint).
SPLIT_FRACTIONS = {"train": 0.6, "val": 0.2, "test": 0.2}
#: The bank's split is fixed, independent of the run seed, so every run sees the same images.
BANK_SPLIT_SEED = 1234
DATA_DIR = data_root() / "sequences"


class DataError(ValueError):
    """A data set or task request that cannot be honoured; the message says why."""


@functools.lru_cache(maxsize=1)
def digit_bank() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 scikit-learn digits as ``(images (1797, 8, 8, 1) float32 in [0, 1], digits (1797,))``."""
    from sklearn.datasets import load_digits

    raw = load_digits()
    images = (raw.images / 16.0).astype(np.float32)[..., None]
    images.setflags(write=False)
    digits = raw.target.astype(np.int64)
    digits.setflags(write=False)
    return images, digits


@functools.lru_cache(maxsize=1)
def bank_split() -> dict[str, np.ndarray]:
    """Disjoint, stratified source-image indices for train / val / test (fixed for the book)."""
    _, digits = digit_bank()
    rng = np.random.default_rng(BANK_SPLIT_SEED)
    parts: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    for d in range(10):
        idx = rng.permutation(np.flatnonzero(digits == d))
        n_train = int(round(len(idx) * SPLIT_FRACTIONS["train"]))
        n_val = int(round(len(idx) * SPLIT_FRACTIONS["val"]))
        parts["train"].append(idx[:n_train])
        parts["val"].append(idx[n_train : n_train + n_val])
        parts["test"].append(idx[n_train + n_val :])
    return {s: np.sort(np.concatenate(p)) for s, p in parts.items()}


@dataclasses.dataclass(frozen=True)
class SequenceSet:
    """Labelled image sequences: either indices into an image bank or dense frames.

    Attributes:
        labels: ``(N,)`` integer class of each sequence.
        num_classes: number of classes of the task.
        index: ``(N, T)`` int32 positions in ``bank`` (bank form), or None.
        bank: ``(M, H, W, C)`` float32 images the index points into, or None.
        bank_digits: ``(M,)`` digit shown by each bank image, or None.
        dense: ``(N, T, H, W, C)`` float32 frames (a reader's own data), or None.
    """

    labels: np.ndarray
    num_classes: int
    index: np.ndarray | None = None
    bank: np.ndarray | None = None
    bank_digits: np.ndarray | None = None
    dense: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def seq_len(self) -> int:
        return int((self.index if self.index is not None else self.dense).shape[1])

    @property
    def indexed(self) -> bool:
        """True when frames are stored as indices into a bank (the fast path applies)."""
        return self.index is not None

    def frames(self) -> np.ndarray:
        """Dense frames ``(N, T, H, W, C)``."""
        return self.bank[self.index] if self.indexed else self.dense

    def subset(self, rows: np.ndarray | slice) -> "SequenceSet":
        """The sequences at ``rows``, sharing the bank."""
        return dataclasses.replace(
            self,
            labels=self.labels[rows],
            index=None if self.index is None else self.index[rows],
            dense=None if self.dense is None else self.dense[rows],
        )


@dataclasses.dataclass(frozen=True)
class TaskData:
    """Train / validation / test sequences of one task, with the manifest that made them."""

    train: SequenceSet
    val: SequenceSet
    test: SequenceSet
    manifest: dict

    @property
    def num_classes(self) -> int:
        return self.train.num_classes

    @property
    def chance(self) -> float:
        """Accuracy of always guessing the most frequent test label."""
        counts = np.bincount(self.test.labels, minlength=self.num_classes)
        return float(counts.max() / counts.sum())


# ----------------------------------------------------------------------------- tasks


def _recall_split(rng, n, seq_len, lag, digits):
    index = rng.integers(0, len(digits), size=(n, seq_len)).astype(np.int32)
    labels = digits[index[:, seq_len - 1 - lag]]
    return index, labels.astype(np.int64)


def _count_split(rng, n, seq_len, target_digit, max_count, digits):
    targets = np.flatnonzero(digits == target_digit)
    others = np.flatnonzero(digits != target_digit)
    labels = rng.integers(0, max_count + 1, size=n)
    index = others[rng.integers(0, len(others), size=(n, seq_len))]
    for i, c in enumerate(labels):
        where = rng.choice(seq_len, size=c, replace=False)
        index[i, where] = targets[rng.integers(0, len(targets), size=c)]
    return index.astype(np.int32), labels.astype(np.int64)


def draw_split(task: str, rng: np.random.Generator, n: int, seq_len: int, lag: int, digits: np.ndarray,
               target_digit: int = 0, max_count: int = 9) -> tuple[np.ndarray, np.ndarray]:
    """``n`` sequences of ``task`` as ``(index (n, T) int32, labels (n,) int64)`` into a bank whose
    images show ``digits``: the one generator behind fixed sets and fresh streams."""
    if task == "recall":
        return _recall_split(rng, n, seq_len, lag, digits)
    return _count_split(rng, n, seq_len, target_digit, max_count, digits)


class SequenceStream:
    """Fresh training sequences for every batch, drawn from the training split's image bank.

    Sequences are index arrays into the bank, so a fresh batch costs nothing; the stream is
    seeded, so batch ``k`` of seed ``s`` is the same on every rebuild. A model that sees fresh
    sequences cannot memorise a fixed training set from its recent frames.

    Example:
        >>> task = make_task("recall", seq_len=6, lag=5, n_train=8, n_val=8, n_test=8, data_dir=None)
        >>> stream = SequenceStream(task, seed=0)
        >>> index, labels = stream.next(4)
        >>> index.shape, bool((task.train.bank_digits[index[:, 0]] == labels).all())
        ((4, 6), True)
    """

    def __init__(self, task: TaskData, seed: int):
        p = task.manifest["parameters"]
        if "task" not in p or task.train.bank_digits is None:
            raise DataError("a fresh-sequence stream needs a generated digit task (make_task), "
                            "not a reader's own .npz")
        self.task, self.params = task, p
        self.digits = task.train.bank_digits
        self.rng = np.random.default_rng([int(seed), 99])

    def next(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """The next ``batch_size`` fresh sequences: ``(index (B, T), labels (B,))``."""
        p = self.params
        return draw_split(p["task"], self.rng, int(batch_size), p["seq_len"], p.get("lag", 0), self.digits,
                          p.get("target_digit", 0), p.get("max_count", 9))


def check_task_args(task: str, seq_len: int, lag: int | None, n_train: int, n_val: int,
                    n_test: int, target_digit: int, max_count: int | None) -> None:
    """Raise :class:`DataError` naming the argument and what is allowed."""
    check_choice("task", task, TASKS, DataError)
    for name, value in (("seq_len", seq_len), ("n_train", n_train), ("n_val", n_val), ("n_test", n_test)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise DataError(f"{name}={value!r} must be a positive integer")
    if task == "recall" and lag is not None:
        if isinstance(lag, bool) or not isinstance(lag, (int, np.integer)) or not 0 <= lag < seq_len:
            raise DataError(f"lag={lag!r} must be an integer in [0, seq_len - 1] = [0, {seq_len - 1}]")
    if task == "count":
        if not 0 <= target_digit <= 9:
            raise DataError(f"target_digit={target_digit!r} must be a digit 0..9")
        if max_count is not None and not 1 <= max_count <= seq_len:
            raise DataError(f"max_count={max_count!r} must be in [1, seq_len] = [1, {seq_len}]")


def make_task(task: str = "recall", seq_len: int = 20, lag: int | None = None,
              n_train: int = 2000, n_val: int = 500, n_test: int = 500, seed: int = 0,
              target_digit: int = 0, max_count: int | None = None,
              data_dir: str | Path | None = DATA_DIR) -> TaskData:
    """Generate (or reuse from ``data_dir``) one task's train / val / test sequences.

    Args:
        task: ``"recall"`` or ``"count"``.
        seq_len: frames per sequence, ``T``.
        lag: recall only; steps before the end of the frame to recall (default ``T - 1``).
        n_train, n_val, n_test: sequences per split.
        seed: generation is deterministic for a seed.
        target_digit, max_count: count only; the digit counted and the largest count
            (default ``min(9, T)``); classes are ``0..max_count``.
        data_dir: where generated sets and their manifests are saved and found
            again; None keeps everything in memory.
    """
    check_task_args(task, seq_len, lag, n_train, n_val, n_test, target_digit, max_count)
    if task == "recall":
        lag = seq_len - 1 if lag is None else int(lag)
        num_classes, extra = 10, {"lag": lag}
    else:
        max_count = min(9, seq_len) if max_count is None else int(max_count)
        num_classes, extra = max_count + 1, {"target_digit": int(target_digit), "max_count": max_count}
    params = {"task": task, "seq_len": int(seq_len), **extra, "n_train": int(n_train),
              "n_val": int(n_val), "n_test": int(n_test), "seed": int(seed),
              "bank_split_seed": BANK_SPLIT_SEED}
    images, digits = digit_bank()
    split = bank_split()

    arrays = _load_saved(data_dir, params) if data_dir is not None else None
    if arrays is None:
        arrays = {}
        sizes = {"train": n_train, "val": n_val, "test": n_test}
        for k, name in enumerate(SPLITS):
            rng = np.random.default_rng([int(seed), k])
            index, labels = draw_split(task, rng, sizes[name], seq_len, lag, digits[split[name]],
                                       target_digit, max_count)
            arrays[f"{name}_index"], arrays[f"{name}_labels"] = index, labels
        if data_dir is not None:
            _save(data_dir, params, arrays)

    sets = {
        name: SequenceSet(labels=arrays[f"{name}_labels"], num_classes=num_classes,
                          index=arrays[f"{name}_index"], bank=images[split[name]],
                          bank_digits=digits[split[name]])
        for name in SPLITS
    }
    manifest = {"parameters": params, "checksum": _checksum(arrays), "num_classes": num_classes}
    return TaskData(manifest=manifest, **sets)


# ----------------------------------------------------------------------------- storage


def _key(params: dict) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


def _checksum(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        h.update(name.encode())
        h.update(np.ascontiguousarray(arrays[name]).tobytes())
    return h.hexdigest()


def _paths(data_dir, params) -> tuple[Path, Path]:
    stem = f"{params['task']}-T{params['seq_len']}-seed{params['seed']}-{_key(params)}"
    return Path(data_dir) / f"{stem}.npz", Path(data_dir) / f"{stem}.json"


def _save(data_dir, params, arrays) -> None:
    npz, manifest = _paths(data_dir, params)
    npz.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(npz, lambda f: np.savez_compressed(f, **arrays))
    text = json.dumps({"parameters": params, "checksum": _checksum(arrays)}, indent=2, sort_keys=True)
    atomic_write(manifest, lambda f: f.write(text.encode()))


def _load_saved(data_dir, params) -> dict[str, np.ndarray] | None:
    npz, manifest = _paths(data_dir, params)
    if not (npz.exists() and manifest.exists()):
        return None
    try:
        with np.load(npz) as f:
            arrays = {k: f[k] for k in f.files}
        saved = json.loads(manifest.read_text())
    except Exception:  # OSError, ValueError, zipfile.BadZipFile (truncated), zlib.error, ...
        return None  # unreadable: regenerate (and overwrite) rather than fail
    if saved.get("parameters") != params or saved.get("checksum") != _checksum(arrays):
        return None
    return arrays


def atomic_write(path: str | Path, write) -> None:
    """Write ``path`` through ``write(fileobj)`` so a killed process never leaves half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


# ----------------------------------------------------------------------------- reader's own data


def load_npz(path: str | Path, num_classes: int | None = None, val_fraction: float = 0.2,
             test_fraction: float = 0.2, seed: int = 0) -> TaskData:
    """Load a reader's own sequences from an ``.npz`` with ``frames`` (N, T, H, W, C) and ``labels`` (N,).

    The file is validated (keys, shapes, dtypes, NaN/Inf, label range, empty set)
    and split at random into train / val / test; every frame is treated as distinct,
    so training takes the general (dense) path.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file; expected an .npz with arrays 'frames' and 'labels'")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as exc:  # zip errors, pickled objects, ...
        raise DataError(f"{path}: not a readable .npz of plain arrays ({exc})") from None
    missing = [k for k in ("frames", "labels") if k not in arrays]
    if missing:
        raise DataError(f"{path}: missing array(s) {missing}; found {sorted(arrays)}; "
                        "expected 'frames' (N, T, H, W, C) and 'labels' (N,)")
    frames, labels = arrays["frames"], arrays["labels"]
    if frames.ndim != 5:
        raise DataError(f"{path}: 'frames' has shape {frames.shape}; expected 5 axes (N, T, H, W, C)")
    if labels.ndim != 1:
        raise DataError(f"{path}: 'labels' has shape {labels.shape}; expected one axis (N,)")
    if frames.shape[0] == 0:
        raise DataError(f"{path}: the data set is empty (N = 0 sequences)")
    if min(frames.shape[1:]) == 0:
        raise DataError(f"{path}: 'frames' has an empty axis, shape {frames.shape}")
    if frames.shape[0] != labels.shape[0]:
        raise DataError(f"{path}: {frames.shape[0]} sequences in 'frames' but {labels.shape[0]} labels")
    if not np.issubdtype(frames.dtype, np.number) or np.issubdtype(frames.dtype, np.complexfloating):
        raise DataError(f"{path}: 'frames' has dtype {frames.dtype}; expected real numbers")
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: 'labels' has dtype {labels.dtype}; expected integers")
    if not np.isfinite(frames).all():
        bad = int((~np.isfinite(frames)).sum())
        raise DataError(f"{path}: 'frames' holds {bad} NaN or Inf value(s)")
    if labels.min() < 0:
        raise DataError(f"{path}: labels must be >= 0; found {labels.min()}")
    num_classes = int(labels.max()) + 1 if num_classes is None else int(num_classes)
    if labels.max() >= num_classes:
        raise DataError(f"{path}: label {labels.max()} is outside [0, num_classes - 1] = [0, {num_classes - 1}]")
    n = labels.shape[0]
    n_val, n_test = int(round(n * val_fraction)), int(round(n * test_fraction))
    if n - n_val - n_test < 1 or (val_fraction > 0 and n_val < 1) or (test_fraction > 0 and n_test < 1):
        raise DataError(f"{path}: {n} sequences are too few to split into train / val / test")
    order = np.random.default_rng(seed).permutation(n)
    frames = frames.astype(np.float32)
    parts = {"test": order[:n_test], "val": order[n_test : n_test + n_val], "train": order[n_test + n_val :]}
    sets = {k: SequenceSet(labels=labels[v].astype(np.int64), num_classes=num_classes, dense=frames[v])
            for k, v in parts.items()}
    manifest = {"parameters": {"source": str(path), "seed": seed, "val_fraction": val_fraction,
                               "test_fraction": test_fraction},
                "checksum": _checksum(arrays), "num_classes": num_classes}
    return TaskData(manifest=manifest, **sets)
