"""The CNN-to-RNN interface levels: keys parsed in one place, each level measured as the RMS of the
features entering the recurrent layer, the rescaled and gain levels at the Keras default's initial
drive, the ablation's table, the chrono LSTM key, and the criterion record's feature RMS."""
import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

import rnnbook  # noqa: F401  (quiets TensorFlow first)
from rnnbook.book.params import REGISTRY, ParamError
from rnnbook.experiments.relu import interface as I
from rnnbook.experiments.common import ExperimentError, parse_rnn_config
from rnnbook.training import TrainConfig

BASE = TrainConfig(seq_len=6, lag=5, n_train=32, n_val=32, n_test=32, units=8)


@pytest.mark.parametrize("key, label, changes", [
    ("keras", "Keras default (Glorot)", {}),
    ("he", "He-uniform", {"encoder_init": "he_uniform"}),
    ("he*0.3", "He-uniform, features x 0.3", {"encoder_init": "he_uniform", "feature_scale": 0.3}),
    ("keras*0.3", "Keras default (Glorot), features x 0.3", {"feature_scale": 0.3}),
    ("he@0.15", "He-uniform, input gain 0.15", {"encoder_init": "he_uniform", "input_gain": 0.15}),
    ("he+ln", "He-uniform + LayerNorm", {"encoder_init": "he_uniform", "feature_norm": "layer_norm"}),
    (" HE*0.5 + ln ", "He-uniform + LayerNorm, features x 0.5",
     {"encoder_init": "he_uniform", "feature_norm": "layer_norm", "feature_scale": 0.5}),
])
def test_keys_give_labels_and_config_fields(key, label, changes):
    spec = I.parse_interface(key)
    assert spec.label == label
    expected = {"encoder_init": "glorot_uniform", "feature_norm": "none", "feature_scale": 1.0, "input_gain": 1.0,
                **changes}
    cfg = spec.apply(dataclasses.replace(BASE, encoder_init="he_uniform", feature_scale=7.0, input_gain=3.0))
    assert {k: getattr(cfg, k) for k in expected} == expected  # a level sets every interface field
    assert I.parse_interface(I.interface_key(cfg)).changes == spec.changes


def test_r_is_the_keras_to_he_ratio_of_the_configs_cnn():
    assert I.keras_he_ratio((16, 32)) == pytest.approx(math.sqrt(9 / 153) * math.sqrt(144 / 432))
    cfg = I.parse_interface("he*r").apply(dataclasses.replace(BASE, conv_filters=(4,)))
    assert cfg.feature_scale == pytest.approx(math.sqrt(9 / 45))
    assert I.parse_interface("he@r").apply(BASE).input_gain == pytest.approx(I.keras_he_ratio())
    assert "r (0.14)" in I.parse_interface("he@r").label


@pytest.mark.parametrize("key", ["", "xavier", "he*0", "he*-1", "he*", "he*0.3*0.2", "he+ln+ln", "he@r2", "keras x 3",
                                 3, None])
def test_bad_keys_name_the_grammar_and_examples(key):
    with pytest.raises(ExperimentError, match=r"keras or he.*\*<s>.*@<g>.*\+ln") as info:
        I.parse_interface(key)
    if key not in ("he*0",):
        assert "he*0.3" in str(info.value) and "he+ln" in str(info.value)


def test_parameters_are_validated_by_the_parser():
    assert REGISTRY["interfaces"].check(["keras", "he*r", "he@0.15", "he+ln"]) == ["keras", "he*r", "he@0.15", "he+ln"]
    with pytest.raises(ParamError, match="interfaces.*'he\\*x'.*keras or he"):
        REGISTRY["interfaces"].check(["keras", "he*x"])
    REGISTRY["ablation_interfaces"].check(list(I.ABLATION_LEVELS))
    REGISTRY["rnn_configs"].check(["lstm-chrono", "lstm", "gru"])
    with pytest.raises(ParamError, match="lstm-chrono"):
        REGISTRY["rnn_configs"].check(["gru-chrono"])


def test_measured_r_and_the_rms_of_every_level():
    """The Keras-default and He encoders of one seed differ by exactly r; the rescaled and gain levels
    start at the Keras default's drive; a LayerNorm gives unit RMS."""
    measured = I.rescale_ratio(BASE, [0, 1])
    assert measured["r"] == pytest.approx(I.keras_he_ratio(), rel=1e-5)
    assert measured["per_seed_max"] - measured["per_seed_min"] < 1e-5
    table = I.rms_summary(I.feature_rms_table(I.ABLATION_LEVELS, BASE, [0, 1])).set_index("interface")
    assert table.loc["keras", "baseline"] and not table.loc["he", "baseline"]
    for key in ("he*r", "he@r"):
        assert table.loc[key, "drive_mean"] == pytest.approx(table.loc["keras", "drive_mean"], rel=1e-4)
    assert table.loc["he@r", "rms_mean"] == pytest.approx(table.loc["he", "rms_mean"])
    assert table.loc["he+ln", "rms_mean"] == pytest.approx(1.0, abs=0.01)
    assert 0.05 < table.loc["keras", "rms_mean"] < 0.2 < 0.4 < table.loc["he", "rms_mean"] < 1.0
    assert I.level_rms(["keras"], BASE, [0])["keras"] == pytest.approx(table.loc["keras", "drive_min"], rel=0.5)


def test_rescaled_and_gain_levels_give_the_keras_defaults_initial_drive():
    """Not only the RMS: the recurrent layer's input projection x K is the same, element by element."""
    from rnnbook import data, recurrence

    images, _ = data.digit_bank()
    drives = {}
    for key in ("keras", "he*r", "he@r", "he"):
        model = I.parse_interface(key).apply(dataclasses.replace(BASE, seed=3)).model(10)
        drives[key] = recurrence.input_projection(model.rnn.cell, model.encoder(images[:50])).numpy()
    scale = np.abs(drives["keras"]).max()
    for key in ("he*r", "he@r"):
        np.testing.assert_allclose(drives[key], drives["keras"], rtol=0, atol=1e-5 * scale)
    assert np.abs(drives["he"]).max() > 5 * scale


def test_drive_table_takes_interfaces_and_the_former_feature_scales():
    p = {"rnn_configs": ["tanh-orthogonal", "gru"], "seeds": [0], "interfaces": ["keras", "he@r"]}
    drive = I.drive_table(p, BASE)
    assert list(drive["interface"]) == ["keras", "he@r"] and list(drive["label"]) == ["tanh + orthogonal"] * 2
    assert drive["drive_rms"].iloc[1] == pytest.approx(drive["drive_rms"].iloc[0], rel=1e-4)
    assert drive["saturated_share"].iloc[1] == drive["saturated_share"].iloc[0]
    old = I.drive_table({"rnn_configs": ["tanh-orthogonal"], "seeds": [0], "feature_scales": [1.0, 0.3]}, BASE)
    assert list(old["interface"]) == ["keras*1", "keras*0.3"] and list(old["feature_scale"]) == [1.0, 0.3]
    shown = I.drive_display(drive)
    assert list(shown["interface level"]) == ["Keras default (Glorot)", "He-uniform, input gain r (0.14)"]


def _run(key, seed, outcome, updates, rms):
    cfg = I.parse_interface(key).apply(dataclasses.replace(BASE, seed=seed))
    return {"record": {"config": cfg.to_dict(), "initial_feature_rms": rms[0], "check_feature_rms": list(rms[1:])},
            "success": outcome == "success", "outcome": outcome, "updates": updates}


def test_ablation_grid_and_table():
    configs, labels, keys = I.ablation_grid(dataclasses.replace(BASE, max_updates=50, check_every=25))
    assert keys == list(I.ABLATION_LEVELS) and labels[0] == "Keras default (Glorot)"
    assert [c.encoder_init for c in configs] == ["glorot_uniform"] + ["he_uniform"] * 4
    assert configs[3].input_gain == pytest.approx(I.keras_he_ratio()) and configs[4].feature_norm == "layer_norm"
    runs = pd.DataFrame([_run("keras", 0, "success", 50, [0.1, 0.2, 0.4]), _run("keras", 1, "censored", 100, [0.1, 0.3]),
                         _run("he@r", 0, "success", 25, [0.7, 0.7]), _run("he@r", 1, "success", 75, [0.7, 0.9, math.nan])])
    table = I.ablation_table(runs).set_index("interface")  # keys read from the configurations
    assert list(table.index) == ["keras", f"he@{I.keras_he_ratio():.4g}"]
    keras, gain = table.iloc[0], table.iloc[1]
    assert keras["baseline"] and keras["successes"] == "1 of 2" and keras["censored"] == 1
    assert keras["rms_init"] == pytest.approx(0.1) and keras["rms_last"] == pytest.approx(0.35)
    assert keras["rms_change"] == pytest.approx(3.5) and keras["median_updates"] == 50
    assert gain["rate"] == 1.0 and gain["lo"] < 1.0 and gain["median_updates"] == 50
    assert gain["drive_init"] == pytest.approx(0.7 * I.keras_he_ratio()) and gain["rms_last"] == pytest.approx(0.8)
    shown = I.ablation_display(I.ablation_table(runs.assign(interface=["keras", "keras", "he@r", "he@r"])))
    assert shown["interface level"][0] == "Keras default (Glorot) (baseline)"
    assert shown["feature RMS at last check"][1] == "0.800"


def test_lstm_chrono_key():
    spec = parse_rnn_config("lstm-chrono")
    assert (spec.cell, spec.lstm_bias_init, spec.label) == ("lstm", "chrono", "LSTM (chrono)")
    cfg = spec.apply(BASE)
    assert cfg.cell == "lstm" and cfg.lstm_bias_init == "chrono" and cfg.chrono_horizon == BASE.seq_len
    assert parse_rnn_config("lstm").apply(cfg).lstm_bias_init == "keras"
    assert parse_rnn_config("tanh-orthogonal").apply(cfg).lstm_bias_init == "keras"
    with pytest.raises(ExperimentError, match="lstm-chrono"):
        parse_rnn_config("gru-chrono")


def test_a_reused_chrono_model_gets_the_bias_of_its_own_horizon():
    """Runs that differ only in sequence length reuse one model (engine.prepare_run): the chrono
    bias must follow the run's horizon, as a fresh build's does."""
    from rnnbook import engine

    short = parse_rnn_config("lstm-chrono").apply(dataclasses.replace(BASE, seed=1))
    long = dataclasses.replace(short, seq_len=30, lag=29)
    task = long.task_data(data_dir=None)
    engine.prepare_run(short, short.task_data(data_dir=None))
    reused = engine.prepare_run(long, task).model
    fresh = long.model(task.num_classes)
    np.testing.assert_array_equal(reused.rnn.cell.bias.numpy(), fresh.rnn.cell.bias.numpy())
    assert np.split(fresh.rnn.cell.bias.numpy(), 4)[1].max() > math.log(short.seq_len - 1)


def test_criterion_records_the_feature_rms_at_start_and_every_check():
    from rnnbook import criterion

    cfg = I.parse_interface("he").apply(dataclasses.replace(BASE, max_updates=4, check_every=2, target_acc=1.0,
                                                            batch_size=8))
    record = criterion.train_to_criterion(cfg, data_dir=None)
    assert len(record["check_feature_rms"]) == len(record["check_updates"]) == 2
    assert 0.4 < record["initial_feature_rms"] < 1.0
    assert all(np.isfinite(record["check_feature_rms"])) and record["check_feature_rms"][-1] != record["initial_feature_rms"]
