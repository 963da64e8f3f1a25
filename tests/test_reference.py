"""The reference store (rnnbook.reference): keys that follow the protocol and not the code,
compact records, append-only gzip parts that survive a kill, the budget ladder, samples and
their comparison."""
from __future__ import annotations

import dataclasses
import gzip
import math

import pytest

from rnnbook import reference as R, verdicts
from rnnbook.training import TrainConfig


def _record(outcome="censored", checks=(25, 50, 75, 100), val=(0.1, 0.3, 0.5, 0.6), target=0.9, steps=100):
    return {"outcome": outcome, "updates": steps, "check_updates": list(checks), "check_val_acc": list(val),
            "config": {"target_acc": target, "check_every": 25, "n_val": 2000}, "chance": 0.1,
            "steps": {"grad_norm": [1.0] * steps, "max_abs_state": [0.5] * steps, "rnn_grad_norm": [0.2] * steps,
                      "loss": [2.3] * steps}, "wall_time": 1.5}


def test_keys_follow_the_protocol_not_the_code():
    a = TrainConfig(seed=3, lag=5, seq_len=6)
    assert R.protocol_key(a) == R.protocol_key(TrainConfig(seq_len=6, lag=5, seed=3))
    assert R.protocol_key(a) != R.protocol_key(dataclasses.replace(a, seed=4))
    assert R.protocol_key(a) != R.protocol_key(dataclasses.replace(a, learning_rate=3e-3))


def test_a_new_field_with_its_default_keeps_the_keys():
    # only non-default fields enter the key: a new field whose default is the old behaviour leaves
    # every shipped record findable; setting it to something else does not find them
    @dataclasses.dataclass(frozen=True)
    class Extended(TrainConfig):
        brand_new_option: float = 1.0

    assert R.protocol_key(Extended(seed=1)) == R.protocol_key(TrainConfig(seed=1))
    assert R.protocol_key(Extended(seed=1, brand_new_option=2.0)) != R.protocol_key(TrainConfig(seed=1))


def test_the_protocol_version_is_in_the_key(monkeypatch):
    cfg = TrainConfig(seed=1)
    before = R.protocol_key(cfg)
    monkeypatch.setattr(R, "PROTOCOL", R.PROTOCOL + 1)
    assert R.protocol_key(cfg) != before


def test_compact_keeps_checks_and_summarises_intervals():
    rec = _record()
    rec["steps"]["grad_norm"][60] = 40.0
    c = R.compact(rec)
    assert "steps" not in c and c["check_val_acc"] == rec["check_val_acc"]
    assert c["check_grad_norm_max"] == [1.0, 1.0, 40.0, 1.0]
    assert c["check_grad_norm_median"] == [1.0] * 4
    assert c["check_interval_end"] == [25, 50, 75, 100]


def test_a_compact_dead_record_still_fails_as_dead():
    rec = _record()
    rec["steps"]["max_abs_state"][75:] = [0.0] * 25
    assert verdicts.failure_reason(R.compact(rec)) == "dead"


def test_store_appends_and_reads_back_and_survives_a_cut_member(tmp_path):
    cfg = TrainConfig(seed=1)
    R.append(cfg, _record(), "relu-a", tmp_path)
    R.append(dataclasses.replace(cfg, seed=2), _record("success", val=(0.1, 0.95, 0.95, 0.95)), "relu-a", tmp_path)
    store = R.load(tmp_path)
    assert len(store) == 2 and store[R.protocol_key(cfg)]["provenance"]["protocol"] == R.PROTOCOL
    # a kill in the middle of writing leaves a truncated member: the runs before it still count
    path = tmp_path / "relu-b.jsonl.gz"
    R.append(dataclasses.replace(cfg, seed=3), _record(), "relu-b", tmp_path)
    data = path.read_bytes()
    with open(path, "ab") as f:
        f.write(gzip.compress(b'{"key": "x", "record": {}}\n')[:10])
    assert R.protocol_key(dataclasses.replace(cfg, seed=3)) in R.load(tmp_path)
    assert path.read_bytes().startswith(data)


def test_a_stored_measurement_is_measured_once_and_keyed_by_the_protocol(tmp_path):
    calls = []

    def measure(config):
        calls.append(config.seed)
        return {"update_norm": [0.5, float(config.seed)]}

    a = R.stored_call("steps", measure, TrainConfig(seed=1), tmp_path)
    assert a == {"update_norm": [0.5, 1.0]} and calls == [1]
    assert R.stored_call("steps", measure, TrainConfig(seed=1), tmp_path) == a and calls == [1]  # read back
    R.stored_call("steps", measure, TrainConfig(seed=2), tmp_path)
    assert calls == [1, 2] and len(list((tmp_path / "steps").glob("*.json"))) == 2
    assert not list((tmp_path / "steps").glob("*.tmp"))


def test_the_budget_ladder_reads_lower_caps_from_one_run():
    rec = _record("success", checks=(25, 50, 75, 100), val=(0.1, 0.5, 0.8, 0.95))
    assert R.outcome_at(rec, 50)["outcome"] == "censored"
    assert R.outcome_at(rec, 100) == {"outcome": "success", "updates": 100, "check_val_acc": [0.1, 0.5, 0.8, 0.95]}
    diverged = dict(_record("diverged", checks=(25,), val=(0.2,)), updates=40)
    assert R.outcome_at(diverged, 25)["outcome"] == "censored"
    assert R.outcome_at(diverged, 200)["outcome"] == "diverged"
    cut = R.at_cap(rec, 75)
    assert cut["outcome"] == "censored" and cut["check_val_acc"] == [0.1, 0.5, 0.8] and cut["updates"] == 75
    assert verdicts.still_improving(cut) is True


def test_ladder_stops_after_the_first_lag_without_a_success():
    assert R.ladder_stops({5: 6, 10: 0, 20: 2}) == 10
    assert R.ladder_stops({5: 1}) is None


def test_samples_mix_successes_and_censored_runs_and_are_seeded():
    items = [(f"s{i}", {"outcome": "success"}) for i in range(5)] + [(f"c{i}", {"outcome": "censored"}) for i in range(5)]
    chosen = R.sample(items, 4, seed=7)
    assert len(chosen) == 4 and sum(k.startswith("s") for k in chosen) == 2
    assert chosen == R.sample(list(reversed(items)), 4, seed=7)
    assert R.sample(items[:2], 4) == R.sample(items[:2], 4) and len(R.sample(items[:2], 4)) == 2


def test_compare_is_exact_on_the_same_platform_and_tolerant_elsewhere():
    a = _record(val=(0.1, 0.3, 0.5, 0.6))
    assert R.compare(a, a, 100)["reproduced"]
    b = _record(val=(0.1, 0.3, 0.5, 0.61))
    assert not R.compare(a, b, 100)["reproduced"]
    assert R.compare(a, b, 100, tolerance=R.TOLERANCE)["reproduced"]
    assert R.compare(a, b, 75)["reproduced"]  # identical up to the re-run's cap
    assert math.isinf(R.compare(a, _record(checks=(25,), val=(0.1,)), 100)["max_abs_diff"])
    # a run that diverged before its first check has no check to compare: its step must match
    early = _record("diverged", checks=(), val=(), steps=7)
    assert R.compare(early, early, 100)["reproduced"] and R.compare(early, early, 100)["checks"] == 0
    assert not R.compare(early, _record("diverged", checks=(), val=(), steps=9), 100)["reproduced"]


def _config_and_record(seed, outcome="censored", val=(0.1, 0.3, 0.5, 0.6)):
    cfg = TrainConfig(seq_len=6, lag=5, seed=seed, max_updates=100, check_every=25, target_acc=0.9)
    rec = R.compact(_record(outcome, val=val))
    rec["provenance"] = R.provenance()
    rec["config"] = cfg.to_dict()
    return cfg, rec


def test_a_rerun_sample_that_reproduces_passes_and_one_that_does_not_names_the_runs():
    rows = [(*_config_and_record(s), "tanh + orthogonal") for s in range(3)]
    same = R.rerun_sample(rows, 2, 50, 0, trainer=lambda cfg: _record(val=(0.1, 0.3)), store="relu")
    assert len(same) == 2 and set(same["reproduced"]) == {"yes"} and set(same["updates re-run"]) == {50}
    with pytest.raises(R.ReferenceMismatch, match=r"did not reproduce: tanh \+ orthogonal, lag 5, seed \d.*--only relu"):
        R.rerun_sample(rows, 2, 50, 0, trainer=lambda cfg: _record(val=(0.1, 0.31)), store="relu")


def test_runs_not_from_the_store_are_never_sampled():
    cfg, rec = _config_and_record(0)
    rec.pop("provenance")
    assert R.rerun_sample([(cfg, rec, "x")], 4, 50, 0, trainer=lambda c: 1 / 0).empty


def test_the_shortest_shipped_runs_reproduce_exactly():
    """Two shipped reference runs re-run in full and compared check by check: a change to the code
    that moves a run's numbers fails here (identical on the platform that computed them)."""
    from rnnbook import sweeps

    store = R.load(R.store_dir())
    if not store:
        pytest.skip("no reference records shipped yet (data/reference is empty)")
    # the shortest with at least two checks (a run that diverged before its first check compares
    # little): two of the image task's, and one of every other task's (the reproductions' store)
    compared = {k: r for k, r in store.items() if len(r.get("check_val_acc") or []) >= 2}
    shortest = sorted(compared.items(), key=lambda kv: (kv[1].get("updates") or 10 ** 9, kv[0]))
    tasks = {r["config"].get("task", "recall") for _, r in shortest}
    chosen = [kv for kv in shortest if kv[1]["config"].get("task", "recall") == "recall"][:2]
    chosen += [next(kv for kv in shortest if kv[1]["config"].get("task") == t) for t in sorted(tasks - {"recall"})]
    for key, record in chosen:
        config = TrainConfig(**record["config"])
        assert R.protocol_key(config) == key
        cap = min(int(record["updates"]), 4 * config.check_every)  # a long run: its first four checks
        again = sweeps.train(dataclasses.replace(config, max_updates=cap))
        tol = 0.0 if R.same_platform(record) else R.TOLERANCE
        result = R.compare(record, again, cap, tol)
        assert result["reproduced"], (key, result)
