"""The synthetic benchmarks: targets recomputed from the inputs, the adding target on Pascanu et al.'s scale (the mean)
and its constant-prediction bar, fresh and reproducible batches."""
import numpy as np
import pytest

from rnnbook import synthetic
from rnnbook.synthetic import SyntheticError, SyntheticTask


def decode_temporal_order(x, variant):
    """Label, positions and symbols of each sequence, read back from the one-hot frames only."""
    symbols = x.argmax(-1)
    relevant = [np.flatnonzero(row < 2) for row in symbols]  # X/Y or A/B are channels 0 and 1
    first = np.array([symbols[i, r[0]] for i, r in enumerate(relevant)])
    second = np.array([symbols[i, r[-1]] for i, r in enumerate(relevant)])
    return 2 * first + second, relevant, symbols


@pytest.mark.parametrize("seq_len", [2, 7, 50])
def test_adding_target_is_the_mean_of_the_two_marked_numbers(seq_len):
    x, y = SyntheticTask("adding", seq_len).batch(seed=3, index=0, batch_size=500)
    assert x.shape == (500, seq_len, 2) and x.dtype == np.float32 and y.dtype == np.float32
    values, marks = x[..., 0].astype(np.float64), x[..., 1]
    assert set(np.unique(marks)) <= {0.0, 1.0}
    half = seq_len // 2
    assert (marks[:, :half].sum(1) == 1).all() and (marks[:, half:].sum(1) == 1).all()
    np.testing.assert_allclose(y, (values * marks).sum(1) / 2, rtol=1e-6)  # Pascanu et al.'s addition.py
    assert values.min() >= 0.0 and values.max() < 1.0


def test_adding_marks_cover_each_half_uniformly():
    x, _ = SyntheticTask("adding", 10).held_out(seed=0, n=20_000)
    first, second = x[:, :5, 1].argmax(1), 5 + x[:, 5:, 1].argmax(1)
    for positions, expected in ((first, range(0, 5)), (second, range(5, 10))):
        counts = np.bincount(positions, minlength=10)[list(expected)]
        assert (counts > 0).all()
        assert counts.min() / counts.max() > 0.9  # 4,000 expected per position


def test_always_predicting_the_expected_target_scores_one_twentyfourth():
    n = 20_000
    _, y = SyntheticTask("adding", 100).held_out(seed=1, n=n)
    # (Y - 1/2)^2 for the mean Y of two uniforms has variance 1/240 - 1/576 (the sum's 7/180 over 16)
    assert synthetic.ADDING_BASELINE_SD == pytest.approx(np.sqrt(7 / 180) / 4)
    tolerance = 5 * synthetic.ADDING_BASELINE_SD / np.sqrt(n)
    assert abs(synthetic.constant_mse(y) - 1 / 24) < tolerance
    assert synthetic.ADDING_BASELINE_MSE == pytest.approx(1 / 24) and synthetic.ADDING_CONSTANT == 0.5
    # on the sum scale (Le et al.'s target) the same predictor is "always 1" with MSE 1/6 = 0.167
    assert synthetic.constant_mse(2 * y, 1.0) == pytest.approx(4 * synthetic.constant_mse(y))
    assert synthetic.adding_deviation_moment(2, synthetic.ADDING_SUM_SCALE) == pytest.approx(1 / 6)
    with pytest.raises(SyntheticError, match="even integer"):
        synthetic.adding_deviation_moment(3)


def test_adding_moments_match_a_numerical_integral():
    d = np.linspace(-0.5, 0.5, 200_001)
    density = 2 - 4 * np.abs(d)  # the mean of two uniforms, centred: triangular on [-1/2, 1/2]
    for k in (0, 2, 4, 6):
        assert np.trapezoid(d ** k * density, d) == pytest.approx(synthetic.adding_deviation_moment(k), rel=1e-6)


def test_always_predicting_the_expected_target_is_right_for_the_stated_share_of_sequences():
    n = 20_000
    _, y = SyntheticTask("adding", 50).held_out(seed=2, n=n)
    share = 1 - synthetic.adding_error_rate(np.full(n, 0.5), y)
    p = synthetic.ADDING_BASELINE_ACCURACY
    assert p == pytest.approx(0.64)  # 1 - 0.6^2: |Y - 1/2| <= 0.2 under the triangular density of the mean Y
    assert abs(share - p) < 5 * np.sqrt(p * (1 - p) / n)
    assert SyntheticTask("adding", 50).chance == p


@pytest.mark.parametrize("error, wrong", [(0.0, False), (0.09, False), (0.11, False), (0.19, False), (0.21, True),
                                          (0.4, True)])
def test_criterion_is_on_the_mean_scale_four_times_looser_than_on_the_sum(error, wrong):
    """A known prediction gives the known error share: an error of e on the mean is 2 e on the sum,
    so the 0.04 rule accepts |e| <= 0.2 on the mean scale (|2 e| <= 0.4 on the sum), where the same
    rule applied to the sum (the book's earlier bar) accepted only |e| <= 0.1 on the mean."""
    _, y = SyntheticTask("adding", 20).batch(seed=0, index=0, batch_size=1000)
    y = y.astype(np.float64)
    assert synthetic.adding_error_rate(y + error, y) == float(wrong)
    assert synthetic.adding_error_rate(y - error, y) == float(wrong)
    on_the_sum = synthetic.adding_error_rate(2 * (y + error), 2 * y)
    assert on_the_sum == float(2 * error > 0.2)  # 0.11 passes on the mean scale, fails on the sum
    half = np.where(np.arange(len(y)) % 2 == 0, y, y + 0.3)  # half right, half wrong by 0.3
    assert synthetic.adding_error_rate(half, y) == pytest.approx(0.5)


def test_adding_error_rate_counts_squared_errors_above_the_cutoff_and_nan_as_wrong():
    targets = np.array([1.0, 1.0, 1.0, 1.0])
    predictions = np.array([1.1, 1.3, np.nan, 0.9])  # squared errors 0.01, 0.09, nan, 0.01
    assert synthetic.adding_error_rate(predictions, targets) == 0.5
    with pytest.raises(SyntheticError, match="3 predictions for 4 targets"):
        synthetic.adding_error_rate(predictions[:3], targets)


@pytest.mark.parametrize("variant,seq_len", [("pascanu2013", 10), ("pascanu2013", 57),
                                             ("hochreiter1997", 20), ("hochreiter1997", 100)])
def test_temporal_order_label_is_recomputed_from_the_frames(variant, seq_len):
    task = SyntheticTask("temporal_order", seq_len, variant)
    x, y = task.batch(seed=5, index=2, batch_size=2000)
    assert x.shape == (2000, seq_len, len(synthetic.SYMBOLS[variant])) and x.dtype == np.float32
    assert (x.sum(-1) == 1).all() and set(np.unique(x)) == {0.0, 1.0}  # one-hot frames
    labels, relevant, symbols = decode_temporal_order(x, variant)
    assert all(len(r) == 2 for r in relevant)
    np.testing.assert_array_equal(labels, y)
    first_window, second_window = synthetic.relevant_windows(seq_len, variant)
    p1, p2 = np.array([r[0] for r in relevant]), np.array([r[1] for r in relevant])
    assert set(p1) == set(first_window) and set(p2) == set(second_window)  # whole windows used, nothing outside
    np.testing.assert_allclose(np.bincount(y, minlength=4) / len(y), 0.25, atol=0.04)
    if variant == "hochreiter1997":
        assert (symbols[:, 0] == 6).all() and (symbols[:, -1] == 7).all()  # E first, trigger B last
        assert set(np.unique(symbols[:, 1:-1])) == {0, 1, 2, 3, 4, 5}
    else:
        assert set(np.unique(symbols)) == {0, 1, 2, 3, 4, 5}


def test_hochreiter_windows_at_t100_are_the_papers():
    first, second = synthetic.relevant_windows(100, "hochreiter1997")
    assert (first.start + 1, first.stop) == (10, 20)  # 1-based t1 in [10, 20]
    assert (second.start + 1, second.stop) == (50, 60)  # 1-based t2 in [50, 60]


def test_pascanu_windows_follow_their_code():
    first, second = synthetic.relevant_windows(200, "pascanu2013")
    assert (first.start, first.stop) == (20, 40) and (second.start, second.stop) == (100, 120)


@pytest.mark.parametrize("task", [SyntheticTask("adding", 30), SyntheticTask("temporal_order", 30)])
def test_batches_are_fresh_and_reproducible(task):
    a_x, a_y = task.batch(seed=0, index=0, batch_size=64)
    b_x, _ = task.batch(seed=0, index=1, batch_size=64)
    again_x, again_y = task.batch(seed=0, index=0, batch_size=64)
    other_seed, _ = task.batch(seed=1, index=0, batch_size=64)
    val, _ = task.batch(seed=0, index=0, batch_size=64, stream="val")
    np.testing.assert_array_equal(a_x, again_x)
    np.testing.assert_array_equal(a_y, again_y)
    for other in (b_x, other_seed, val):
        assert not any((a_x[i] == other[j]).all() for i in range(64) for j in range(64))


def test_held_out_set_is_fixed_and_independent_of_the_chunking():
    task = SyntheticTask("temporal_order", 40, "hochreiter1997")
    x1, y1 = task.held_out(seed=2, n=2500, stream="val")
    x2, y2 = task.held_out(seed=2, n=2500, stream="val")
    assert x1.shape[0] == 2500
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    first_chunk, _ = task.batch(seed=2, index=0, batch_size=1000, stream="val")
    np.testing.assert_array_equal(x1[:1000], first_chunk)


def test_task_shapes_and_baselines():
    adding, order = SyntheticTask("adding", 5), SyntheticTask("temporal_order", 50, "hochreiter1997")
    assert (adding.n_features, adding.n_outputs, adding.is_regression) == (2, 1, True)
    assert (order.n_features, order.n_outputs, order.is_regression) == (8, 4, False)
    assert order.baseline == 0.25 and adding.baseline == pytest.approx(1 / 24)
    assert (adding.num_classes, order.num_classes, order.chance) == (1, 4, 0.25)


@pytest.mark.parametrize("make,message", [
    (lambda: SyntheticTask("adding", 1), r"seq_len=1 must be an integer >= 2"),
    (lambda: SyntheticTask("temporal_order", 19, "hochreiter1997"), r"seq_len=19 must be an integer >= 20"),
    (lambda: SyntheticTask("temporal_order", 9), r"seq_len=9 must be an integer >= 10"),
    (lambda: SyntheticTask("temporal_order", 50, "hochreiter"), r"variant='hochreiter' .* hochreiter1997, pascanu2013"),
    (lambda: SyntheticTask("copying", 50), r"task='copying' .* adding, temporal_order"),
    (lambda: SyntheticTask("adding", 2.5), r"seq_len=2.5 must be an integer"),
    (lambda: SyntheticTask("adding", 10).batch(0, 0, 0), r"batch_size=0 must be an integer >= 1"),
    (lambda: SyntheticTask("adding", 10).batch(0, -1, 8), r"index=-1 must be an integer >= 0"),
    (lambda: SyntheticTask("adding", 10).batch(0, 0, 8, stream="dev"), r"stream='dev' .* train, val, test"),
    (lambda: SyntheticTask("adding", 10).held_out(0, 8, stream="train"), r"held-out sets use 'val' or 'test'"),
    (lambda: synthetic.adding_problem(np.random.RandomState(0), 4, 10), r"numpy.random.Generator"),
])
def test_bad_arguments_name_the_problem_and_the_valid_choices(make, message):
    with pytest.raises(SyntheticError, match=message):
        make()


def test_stream_yields_batch_k_in_order_and_resumes():
    task = SyntheticTask("temporal_order", 20)
    stream = task.stream(seed=4)
    first, second = stream.next(8), stream.next(8)
    np.testing.assert_array_equal(first[0], task.batch(4, 0, 8)[0])
    np.testing.assert_array_equal(second[0], task.batch(4, 1, 8)[0])
    resumed = task.stream(seed=4)
    resumed.next_index = 1
    np.testing.assert_array_equal(resumed.next(8)[1], second[1])
    with pytest.raises(SyntheticError, match="stream='fresh'"):
        task.stream(seed=4, stream="fresh")
