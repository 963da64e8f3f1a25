"""Image-sequence tasks: labels recomputed from the source images, disjoint splits,
determinism, the on-disk cache, argument checks and the reader's-own-data loader."""
import numpy as np
import pytest

import rnnbook  # noqa: F401  (quiets TensorFlow first)
from rnnbook import data
from rnnbook.data import DataError

SIZES = dict(n_train=40, n_val=12, n_test=12)


@pytest.fixture(scope="module")
def sklearn_lookup():
    """Map the raw pixel bytes of each scikit-learn digit to its target (computed independently)."""
    from sklearn.datasets import load_digits

    raw = load_digits()
    pixels = raw.images.reshape(len(raw.images), -1).astype(np.int64)  # values 0..16
    lookup = {}
    for row, target in zip(pixels, raw.target):
        lookup.setdefault(row.tobytes(), set()).add(int(target))
    return lookup


def sklearn_digit(lookup, image):
    """Digit of a bank image (float in [0, 1]) found by matching its pixels to scikit-learn's."""
    key = np.rint(np.asarray(image).reshape(-1) * 16.0).astype(np.int64).tobytes()
    matches = lookup[key]  # KeyError: the frame is not one of the real digits
    assert len(matches) == 1
    return next(iter(matches))


@pytest.mark.parametrize("seq_len, lag", [(5, 2), (6, 5), (4, 0)])
def test_recall_labels_are_the_digit_at_the_lag(seq_len, lag, sklearn_lookup):
    task = data.make_task("recall", seq_len=seq_len, lag=lag, seed=3, data_dir=None, **SIZES)
    for s in (task.train, task.val, task.test):
        assert s.index.shape == (len(s), seq_len)
        pos = seq_len - 1 - lag
        np.testing.assert_array_equal(s.labels, s.bank_digits[s.index[:, pos]])
        frames = s.frames()
        assert frames.shape == (len(s), seq_len, 8, 8, 1)
        from_pixels = [sklearn_digit(sklearn_lookup, frames[i, pos]) for i in range(len(s))]
        np.testing.assert_array_equal(s.labels, from_pixels)
    # distractors really vary: labels are not simply the digit at another position
    other = (seq_len - lag) % seq_len
    if other != seq_len - 1 - lag:
        assert not np.array_equal(task.train.labels, task.train.bank_digits[task.train.index[:, other]])


def test_recall_default_lag_is_first_frame():
    task = data.make_task("recall", seq_len=5, seed=0, data_dir=None, **SIZES)
    assert task.manifest["parameters"]["lag"] == 4
    np.testing.assert_array_equal(task.train.labels, task.train.bank_digits[task.train.index[:, 0]])


def test_count_labels_count_the_target_digit(sklearn_lookup):
    task = data.make_task("count", seq_len=6, target_digit=3, max_count=4, seed=1, data_dir=None, **SIZES)
    assert task.num_classes == 5
    for s in (task.train, task.val, task.test):
        np.testing.assert_array_equal(s.labels, (s.bank_digits[s.index] == 3).sum(axis=1))
        frames = s.frames()
        from_pixels = [sum(sklearn_digit(sklearn_lookup, frames[i, t]) == 3 for t in range(6))
                       for i in range(len(s))]
        np.testing.assert_array_equal(s.labels, from_pixels)
        assert s.labels.min() >= 0 and s.labels.max() <= 4
    assert len(np.unique(task.train.labels)) > 1


def test_splits_share_no_source_image():
    split = data.bank_split()
    sets = {k: set(v.tolist()) for k, v in split.items()}
    assert not sets["train"] & sets["val"]
    assert not sets["train"] & sets["test"]
    assert not sets["val"] & sets["test"]
    assert len(sets["train"] | sets["val"] | sets["test"]) == len(data.digit_bank()[0])

    task = data.make_task("recall", seq_len=4, seed=0, data_dir=None, **SIZES)
    rows = {name: {img.tobytes() for img in getattr(task, name).bank.reshape(-1, 64)} for name in data.SPLITS}
    assert len(rows["train"]) == len(split["train"])
    assert not rows["train"] & rows["val"]
    assert not rows["train"] & rows["test"]
    assert not rows["val"] & rows["test"]
    # and the frames the sequences actually use come from their own split's bank
    used = {name: {f.tobytes() for f in getattr(task, name).frames().reshape(-1, 64)} for name in data.SPLITS}
    assert used["test"] <= rows["test"] and not used["test"] & rows["train"]


def test_generation_is_deterministic_per_seed():
    a = data.make_task("recall", seq_len=5, seed=7, data_dir=None, **SIZES)
    b = data.make_task("recall", seq_len=5, seed=7, data_dir=None, **SIZES)
    c = data.make_task("recall", seq_len=5, seed=8, data_dir=None, **SIZES)
    for name in data.SPLITS:
        np.testing.assert_array_equal(getattr(a, name).index, getattr(b, name).index)
        np.testing.assert_array_equal(getattr(a, name).labels, getattr(b, name).labels)
        assert not np.array_equal(getattr(a, name).index, getattr(c, name).index)
    assert a.manifest["checksum"] == b.manifest["checksum"] != c.manifest["checksum"]
    # the splits are not copies of one another
    assert not np.array_equal(a.val.index, a.test.index)


def _counting_generator(monkeypatch):
    calls = []
    real = data._recall_split

    def wrapped(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(data, "_recall_split", wrapped)
    return calls


def _files(d):
    return sorted(p.name for p in d.iterdir())


def test_saved_sets_are_reused(tmp_path, monkeypatch):
    calls = _counting_generator(monkeypatch)
    kw = dict(task="recall", seq_len=5, lag=1, seed=2, data_dir=tmp_path, **SIZES)
    first = data.make_task(**kw)
    assert len(calls) == 3  # one per split
    files = _files(tmp_path)
    assert len([f for f in files if f.endswith(".npz")]) == 1
    assert len([f for f in files if f.endswith(".json")]) == 1
    assert not [f for f in files if f.startswith(".") or f.endswith(".tmp")]
    npz = next(tmp_path.glob("*.npz"))
    mtime = npz.stat().st_mtime_ns

    second = data.make_task(**kw)
    assert len(calls) == 3, "second call regenerated instead of reusing the saved set"
    assert npz.stat().st_mtime_ns == mtime
    assert second.manifest == first.manifest
    for name in data.SPLITS:
        np.testing.assert_array_equal(getattr(first, name).index, getattr(second, name).index)

    data.make_task(**{**kw, "seed": 3})  # other parameters: a new file, not a reuse
    assert len(calls) == 6
    assert len(list(tmp_path.glob("*.npz"))) == 2


def _truncate(path):
    b = path.read_bytes()
    path.write_bytes(b[: len(b) // 2])


def _alter_labels(path):
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["train_labels"] = (arrays["train_labels"] + 1) % 10
    np.savez_compressed(path, **arrays)


def _alter_manifest(path):
    manifest = path.with_suffix(".json")
    manifest.write_text(manifest.read_text().replace('"checksum": "', '"checksum": "0'))


def _garbage(path):
    path.write_bytes(b"not an npz at all")


@pytest.mark.parametrize("damage", [_truncate, _alter_labels, _alter_manifest, _garbage])
def test_damaged_saved_set_is_detected_and_regenerated(tmp_path, monkeypatch, damage):
    calls = _counting_generator(monkeypatch)
    kw = dict(task="recall", seq_len=5, lag=1, seed=2, data_dir=tmp_path, **SIZES)
    good = data.make_task(**kw)
    npz = next(tmp_path.glob("*.npz"))
    damage(npz)
    again = data.make_task(**kw)
    assert len(calls) == 6, "damaged file was not regenerated"
    for name in data.SPLITS:
        np.testing.assert_array_equal(getattr(good, name).labels, getattr(again, name).labels)
        np.testing.assert_array_equal(getattr(good, name).index, getattr(again, name).index)
    # the regenerated file was written back and is reused next time
    data.make_task(**kw)
    assert len(calls) == 6
    assert not [f for f in _files(tmp_path) if f.startswith(".") or f.endswith(".tmp")]


@pytest.mark.parametrize("kwargs, name", [
    (dict(task="copy"), "task"),
    (dict(seq_len=0), "seq_len"),
    (dict(seq_len=-3), "seq_len"),
    (dict(seq_len=2.5), "seq_len"),
    (dict(n_train=0), "n_train"),
    (dict(n_val=-1), "n_val"),
    (dict(n_test=0), "n_test"),
    (dict(seq_len=5, lag=5), "lag"),
    (dict(seq_len=5, lag=-1), "lag"),
    (dict(seq_len=5, lag=1.5), "lag"),
    (dict(task="count", target_digit=10), "target_digit"),
    (dict(task="count", seq_len=4, max_count=5), "max_count"),
    (dict(task="count", max_count=0), "max_count"),
])
def test_check_task_args_names_the_argument(kwargs, name):
    args = dict(task="recall", seq_len=5, lag=None, n_train=4, n_val=4, n_test=4, target_digit=0, max_count=None)
    args.update(kwargs)
    with pytest.raises(DataError, match=rf"\b{name}="):
        data.check_task_args(**args)
    with pytest.raises(DataError, match=rf"\b{name}="):
        data.make_task(data_dir=None, **args)


def test_check_task_args_accepts_edges():
    data.check_task_args("recall", 5, 0, 1, 1, 1, 0, None)
    data.check_task_args("recall", 5, 4, 1, 1, 1, 0, None)
    data.check_task_args("count", 4, None, 1, 1, 1, 9, 4)
    with pytest.raises(DataError, match="recall, count"):
        data.check_task_args("copy", 5, None, 1, 1, 1, 0, None)


# ----------------------------------------------------------------------------- load_npz

N, T = 10, 3


def good_arrays():
    rng = np.random.default_rng(0)
    return {"frames": rng.random((N, T, 8, 8, 1)).astype(np.float32),
            "labels": rng.integers(0, 3, size=N).astype(np.int64)}


def write(tmp_path, **arrays):
    path = tmp_path / "mine.npz"
    np.savez(path, **arrays)
    return path


def test_load_npz_accepts_a_good_file(tmp_path):
    arrays = good_arrays()
    arrays["labels"][:3] = [0, 1, 2]
    task = data.load_npz(write(tmp_path, **arrays), val_fraction=0.2, test_fraction=0.2, seed=0)
    assert (len(task.train), len(task.val), len(task.test)) == (6, 2, 2)
    assert task.num_classes == 3
    pairs = {(f.tobytes(), int(y)) for f, y in zip(arrays["frames"], arrays["labels"])}
    seen = []
    for s in (task.train, task.val, task.test):
        assert not s.indexed and s.index is None and s.bank is None
        assert s.frames().shape[1:] == (T, 8, 8, 1) and s.frames().dtype == np.float32
        assert s.labels.dtype == np.int64
        for f, y in zip(s.frames(), s.labels):
            assert (f.tobytes(), int(y)) in pairs  # frames keep their own label
            seen.append(f.tobytes())
    assert len(set(seen)) == N  # every sequence lands in exactly one split
    assert data.load_npz(write(tmp_path, **arrays), num_classes=7).num_classes == 7


def bad_cases():
    g = good_arrays()
    nan = g["frames"].copy()
    nan[2, 1, 3, 3, 0] = np.nan
    inf = g["frames"].copy()
    inf[0, 0, 0, 0, 0] = np.inf
    return {
        "missing_labels": (dict(frames=g["frames"]), r"missing array.*labels"),
        "missing_frames": (dict(labels=g["labels"], images=g["frames"]), r"missing array.*frames"),
        "frames_ndim": (dict(frames=g["frames"][..., 0], labels=g["labels"]), r"'frames' has shape.*5 axes"),
        "labels_ndim": (dict(frames=g["frames"], labels=g["labels"][:, None]), r"'labels' has shape.*one axis"),
        "mismatched_n": (dict(frames=g["frames"], labels=g["labels"][:-1]), rf"{N} sequences.*{N - 1} labels"),
        "empty": (dict(frames=g["frames"][:0], labels=g["labels"][:0]), r"empty"),
        "nan": (dict(frames=nan, labels=g["labels"]), r"1 NaN or Inf"),
        "inf": (dict(frames=inf, labels=g["labels"]), r"1 NaN or Inf"),
        "float_labels": (dict(frames=g["frames"], labels=g["labels"].astype(np.float32)), r"'labels' has dtype float32.*integers"),
        "negative_labels": (dict(frames=g["frames"], labels=g["labels"] - 1), r"labels must be >= 0"),
        "string_frames": (dict(frames=np.full((N, T, 2, 2, 1), "a"), labels=g["labels"]), r"'frames' has dtype.*real numbers"),
    }


@pytest.mark.parametrize("case", sorted(bad_cases()))
def test_load_npz_rejects_bad_files(tmp_path, case):
    arrays, message = bad_cases()[case]
    with pytest.raises(DataError, match=message):
        data.load_npz(write(tmp_path, **arrays))


def test_load_npz_rejects_label_out_of_range(tmp_path):
    arrays = good_arrays()
    arrays["labels"][4] = 5
    with pytest.raises(DataError, match=r"label 5 is outside \[0, num_classes - 1\] = \[0, 2\]"):
        data.load_npz(write(tmp_path, **arrays), num_classes=3)


def test_load_npz_rejects_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        data.load_npz(tmp_path / "nope.npz")


def test_load_npz_rejects_object_arrays(tmp_path):
    arrays = good_arrays()
    obj = np.empty(N, dtype=object)
    obj[:] = [int(v) for v in arrays["labels"]]
    path = tmp_path / "obj.npz"
    np.savez(path, frames=arrays["frames"], labels=obj)
    with pytest.raises(DataError, match="not a readable .npz of plain arrays"):
        data.load_npz(path)


def test_load_npz_rejects_corrupt_file(tmp_path):
    path = tmp_path / "junk.npz"
    path.write_bytes(b"PK\x03\x04 definitely not a zip")
    with pytest.raises(DataError, match="not a readable"):
        data.load_npz(path)


def test_load_npz_rejects_too_few_to_split(tmp_path):
    arrays = good_arrays()
    with pytest.raises(DataError, match="too few"):
        data.load_npz(write(tmp_path, frames=arrays["frames"][:2], labels=arrays["labels"][:2]))
