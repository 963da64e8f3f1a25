"""The benchmark's JSON path runs at tiny sizes and gives every key the README documents, finite."""
import dataclasses
import json
import math
import re

import pytest

import rnnbook  # noqa: F401  (quiets TensorFlow first)
from rnnbook import bench, bench_sweep
from conftest import ROOT


def documented_keys() -> set[str]:
    """The JSON keys listed in the README's benchmark section (``<T>`` stands for a length)."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## How fast training is"):]
    section = section[:section.index("\n## ", 1)]
    block = section[section.index("JSON keys"):]
    return set(re.findall(r"`([a-z][A-Za-z0-9_<>]*)`", block))


def expanded(keys, lengths=(10, 100), cells=bench.UPDATE_CELLS) -> set[str]:
    """The documented keys with ``<T>`` replaced by each of ``lengths`` and ``<cell>`` by each of ``cells``."""
    keys = {k.replace("<cell>", c) for k in keys for c in (cells if "<cell>" in k else ("",))}
    return {k.replace("<T>", str(t)) for k in keys for t in (lengths if "<T>" in k else ("",))}


def test_readme_documents_the_issue_keys():
    keys = expanded(documented_keys())
    for key in ("speedup_gru_T100", "speedup_lstm_T100", "seq_per_s_gru_T100", "seq_per_s_lstm_T100",
                "run_overhead_s", "seq_per_s_T10", "dedup_bound_T100", "speedup_T100_spread",
                "speedup_gru_T100_spread", "speedup_lstm_T100_spread", "sweep_runs_per_hour",
                "sweep_runs_per_hour_one_at_a_time", "sweep_speedup", "check_share", "ms_per_update_simple_rnn_T10",
                "ms_per_update_gru_T100", "ms_per_update_lstm_T10_spread", "update_ratio_gru_T100"):
        assert key in keys, key


def _tiny_sample(max_updates=None):
    """Two runs to a criterion small enough for a test (the real sample runs for minutes)."""
    from rnnbook.training import TrainConfig

    base = TrainConfig(seq_len=4, lag=3, n_train=8, n_val=16, n_test=8, units=4, conv_filters=(4,), batch_size=4,
                       max_updates=4, check_every=2)
    return [base, dataclasses.replace(base, cell="gru", target_acc=0.01)]


def test_json_path_gives_every_documented_key_finite(capsys, monkeypatch):
    peaks = bench.matmul_peak_gflops, bench.conv_peak_gflops  # smaller peak runs: the path, not the machine
    monkeypatch.setattr(bench, "matmul_peak_gflops", lambda: peaks[0](n=256, repeats=1))
    monkeypatch.setattr(bench, "conv_peak_gflops", lambda model: peaks[1](model, images=64, repeats=1))
    monkeypatch.setattr(bench_sweep, "sample", _tiny_sample)
    code = bench.main(["--json", "--seq-lens", "10", "100", "--gated-seq-len", "100", "--batch-size", "4",
                       "--steps", "1", "--repeats", "1", "--units", "4", "--update-seq-lens", "10", "100"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    missing, bad = [], []
    for key in sorted(expanded(documented_keys())):
        if key not in result:
            missing.append(key)
        elif not (isinstance(result[key], (int, float)) and math.isfinite(result[key])):
            bad.append((key, result[key]))
    assert not missing and not bad, (missing, bad)
    assert result["speedup_T100_spread"] == 0  # one repeat: no spread
    assert result["dedup_bound_T100"] == pytest.approx(4 * 100 / result["rows"][1]["distinct_images_per_batch"])
    assert 1 <= result["dedup_bound_T100"] <= 100
    assert result["run_overhead_s"] > 0
    assert result["sweep_runs"] == 2 and result["sweep_successes"] == 1 and 0 < result["check_share"] < 1
    assert result["sweep_speedup"] == pytest.approx(result["sweep_runs_per_hour"]
                                                   / result["sweep_runs_per_hour_one_at_a_time"])


def test_bad_arguments_are_named(capsys):
    with pytest.raises(SystemExit) as exc:
        bench.main(["--repeats", "0"])
    assert exc.value.code == 2
    assert "--repeats" in capsys.readouterr().err
