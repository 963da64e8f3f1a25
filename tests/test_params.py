"""Parameters: parsing as data, validation of every bad-input case, the registry."""
from __future__ import annotations

import dataclasses
import re

import pytest
import yaml

from rnnbook.book import build, cli, cross_checks, parameters_cell, params
from rnnbook.book.params import ParamError, Param, REGISTRY


# ---------------------------------------------------------------- parsing
@pytest.mark.parametrize("text, value", [
    ("20", 20),
    ("-3", -3),
    ("1e-3", 0.001),
    ("0.5", 0.5),
    ("None", None),
    ("True", True),
    ("true", True),
    ("tanh", "tanh"),
    ("[tanh, relu]", ["tanh", "relu"]),
    ("['tanh', 'relu']", ["tanh", "relu"]),
    ("[20, 50]", [20, 50]),
    ("(16, 32)", (16, 32)),
    ("global_clipnorm", "global_clipnorm"),
])
def test_parse_value(text, value):
    assert params.parse_value(text) == value


def test_parse_assignment():
    assert params.parse_assignment("seq_len=20") == ("seq_len", 20)
    assert params.parse_assignment(" activation = relu ") == ("activation", "relu")
    assert params.parse_assignment("x=a=b") == ("x", "a=b")
    with pytest.raises(ParamError, match="NAME=VALUE"):
        params.parse_assignment("seq_len")
    with pytest.raises(ParamError, match="not a parameter name"):
        params.parse_assignment("1x=3")


def test_text_is_never_evaluated(tmp_path):
    marker = tmp_path / "pwned"
    text = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    name, value = params.parse_assignment(f"seq_len={text}")
    assert isinstance(value, str)  # stays text
    with pytest.raises(ParamError, match="seq_len.*expected int"):
        params.validate({name: value})
    assert not marker.exists()


def test_yaml_file_is_safe_loaded(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("seq_len: 50\nlearning_rate: 1e-3\nactivations: [tanh, relu]\nlag: null\n")
    assert params.load_yaml_file(good) == {
        "seq_len": 50, "learning_rate": 0.001, "activations": ["tanh", "relu"], "lag": None,
    }
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.yaml"
    evil.write_text(f"seq_len: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ParamError, match="not valid"):
        params.load_yaml_file(evil)
    assert not marker.exists()
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ParamError, match="mapping"):
        params.load_yaml_file(listy)
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing\n")
    assert params.load_yaml_file(empty) == {}
    with pytest.raises(ParamError, match="does not exist"):
        params.load_yaml_file(tmp_path / "missing.yaml")


# ---------------------------------------------------------------- validation
def test_valid_values_are_normalised():
    out = params.validate({
        "seq_len": 20, "learning_rate": 1, "lag": None, "seeds": (0, 1),
        "clip_modes": "none,clipnorm", "lags": 50,
    })
    assert out == {
        "seq_len": 20, "learning_rate": 1.0, "lag": None, "seeds": [0, 1],
        "clip_modes": ["none", "clipnorm"], "lags": [50],
    }
    assert isinstance(out["learning_rate"], float)


def test_unknown_name_suggests_closest():
    with pytest.raises(ParamError, match=r"unknown parameter 'seq_lenn'.*did you mean 'seq_len'"):
        params.validate({"seq_lenn": 3})
    with pytest.raises(ParamError, match=r"unknown parameter 'learnig_rate'.*did you mean 'learning_rate'"):
        params.validate({"learnig_rate": 0.1})


def test_registered_but_undeclared_name():
    with pytest.raises(ParamError, match="declared by no chapter"):
        params.validate({"clip_modes": ["none"]}, declared={"chapters/x": ["seq_len"]})


@pytest.mark.parametrize("name, value, match", [
    ("seq_len", "abc", "expected int"),
    ("seq_len", 2.5, "expected int"),
    ("seq_len", True, "expected int"),
    ("seq_len", [20], "expected int"),
    ("learning_rate", "fast", "expected float"),
    ("activation", 3, "expected str"),
    ("activations", ["tanh", 3], "element 3"),
    ("lag", "first", r"expected int \| None"),
    ("seeds", [0, "one"], "element 'one'"),
])
def test_wrong_type(name, value, match):
    with pytest.raises(ParamError, match=rf"parameter '{name}'.*{match}"):
        params.validate({name: value})


@pytest.mark.parametrize("name, value, allowed", [
    ("seq_len", 0, "> 0"),
    ("seq_len", -5, "> 0"),
    ("widths", [20, 0], "> 0"),
    ("learning_rate", 0.0, "> 0"),
    ("learning_rate", -1e-3, "> 0"),
    ("clip_modes", ["none", "norm"], "one of none, clipnorm, global_clipnorm, clipvalue"),
    ("task", "copy", "one of recall, count"),
    ("lag", -1, ">= 0"),
    ("activation", "tanhh", "activation name that Keras knows"),
    ("activations", ["relu", "rectifier"], "activation name that Keras knows"),
])
def test_impossible_values(name, value, allowed):
    with pytest.raises(ParamError) as err:
        params.validate({name: value})
    msg = str(err.value)
    assert f"parameter '{name}'" in msg
    assert allowed in msg


def test_keras_activations_accepted():
    assert params.validate({"activations": ["tanh", "relu", "sigmoid", "linear"]})["activations"] == [
        "tanh", "relu", "sigmoid", "linear"]


def test_resolve_order():
    merged = params.resolve({"a": 1, "b": 1, "c": 1}, [{"b": 2, "c": 2}], {"c": 3})
    assert merged == {"a": 1, "b": 2, "c": 3}


def test_adding_a_param_is_one_line():
    p = Param("n_layers", int, params.positive)
    assert p.check(2) == 2
    with pytest.raises(ParamError, match="'n_layers'.*> 0"):
        p.check(0)
    with pytest.raises(ParamError, match=r"'n_layers'.*> 0 \(stacked recurrent layers\)"):
        p.check(0, description="stacked recurrent layers")
    assert Param("gains", list[float], params.positive).type_name == "list[float]"


def test_the_registry_holds_no_description():
    """A parameter's meaning is written once, in the chapter's parameters cell."""
    with pytest.raises(TypeError, match="a description belongs in the chapter's parameters cell"):
        Param("n_layers", int, "stacked recurrent layers", params.positive)
    assert "description" not in {f.name for f in dataclasses.fields(Param)}


# ---------------------------------------------------------------- parameters cells
def test_parse_parameters_source():
    src = "seq_len = 20  # frames\nactivations: list = ['tanh', 'relu']\nlag = None\n"
    assert parameters_cell.parse_parameters_source(src) == {"seq_len": 20, "activations": ["tanh", "relu"], "lag": None}
    with pytest.raises(ParamError, match="literal"):
        parameters_cell.parse_parameters_source("seq_len = int('20')")
    with pytest.raises(ParamError, match="only hold"):
        parameters_cell.parse_parameters_source("import os\nseq_len = 3")


def test_a_parameters_description_is_the_comment_ending_its_line():
    src = ("# a heading, not a description\nseq_len = 20  # frames per sequence, T\n"
           "lags = [\n    3, 10,  # the short ones\n    40,  # and a long one\n]\nlag = None\ntag = '#1'\n")
    assert parameters_cell.parameter_descriptions(src) == {
        "seq_len": "frames per sequence, T", "lags": "the short ones and a long one", "lag": "", "tag": ""}
    with pytest.raises(ParamError, match="only hold"):
        parameters_cell.parameter_descriptions("import os  # no\nseq_len = 3")


def test_every_chapter_has_one_parameters_cell_with_registered_valid_defaults(repo_root):
    chapters = build.find_chapters(repo_root)  # raises on a missing/extra cell or unregistered name
    assert chapters, "no chapter in _toc.yml"
    for c in chapters:
        assert c.defaults, f"{c.docname} declares no parameter"
        for name, default in c.defaults.items():
            assert name in REGISTRY, f"{c.docname} declares unregistered {name!r}"
            REGISTRY[name].check(default, source=c.docname)


def test_every_chapter_md_is_a_registered_notebook(repo_root):
    """Also chapters not (yet) in the table of contents."""
    for path in sorted((repo_root / "chapters").glob("*.md")):
        if build.is_notebook(path):
            for name in parameters_cell.declared_parameters(path):
                assert name in REGISTRY, f"{path.name} declares unregistered {name!r}"


def test_every_parameter_is_described_once_in_its_chapter(repo_root):
    """Each parameter a chapter declares says what it means in its parameters cell (the comment
    ending its line), and nowhere else: not in the registry (book/params.py)."""
    registry_source = (repo_root / "src" / "rnnbook" / "book" / "params.py").read_text()
    for path in sorted((repo_root / "chapters").glob("*.md")):
        if not build.is_notebook(path):
            continue
        for name, text in parameters_cell.declared_descriptions(path).items():
            assert len(text.split()) >= 2, f"{path.name}: {name!r} has no description (a comment ending its line)"
            assert f'"{text}"' not in registry_source, f"{name!r}: its description is written in params.py too"


@pytest.mark.parametrize("preset", ["default", "quick"])
def test_presets_are_valid(repo_root, preset):
    values = params.load_preset(repo_root, preset)
    for name, value in values.items():
        assert name in REGISTRY, f"presets/{preset}.yaml: unregistered {name!r}"
        REGISTRY[name].check(value, source=f"presets/{preset}.yaml")
    chapters = build.find_chapters(repo_root)
    build.resolve_parameters(repo_root, chapters, preset)


# ---------------------------------------------------------------- the command line
def test_list_params(repo_root, capsys):
    assert cli.main(["build", "--list-params", "--root", str(repo_root)]) == 0
    out = capsys.readouterr().out
    for c in build.find_chapters(repo_root):
        for name, default in c.defaults.items():
            line = next(ln for ln in out.splitlines() if ln.startswith(name + " "))
            assert c.title in line and REGISTRY[name].type_name in line
            assert c.descriptions[name] and c.descriptions[name] in line


@pytest.mark.parametrize("args, expected", [
    (["-p", "seq_lenn=3"], "did you mean 'seq_len'"),
    (["-p", "seq_len=0"], "parameter 'seq_len' (from -p): value 0 is not allowed: must be > 0"),
    (["-p", "seq_len=ten"], "expected int"),
    (["--preset", "quik"], "did you mean 'quick'"),
])
def test_cli_rejects_bad_parameters_before_executing(toy_book, args, expected, capsys):
    code = cli.main(["build", "--root", str(toy_book), "--no-progress", *args])
    assert code == 2
    assert expected in capsys.readouterr().err
    assert not (toy_book / "_build").exists()  # nothing ran


def test_cli_rejects_bad_yaml_file(toy_book, tmp_path, capsys):
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump({"seq_len": -4}))
    assert cli.main(["build", "--root", str(toy_book), "-f", str(f)]) == 2
    assert f"parameter 'seq_len' (from {f})" in capsys.readouterr().err


# ---------------------------------------------------------------- rules every value and every chapter obey
@pytest.mark.parametrize("name", sorted(n for n, p in REGISTRY.items() if p.type_name.startswith("list[")
                                         and params.MAY_BE_EMPTY not in p.validators))
def test_no_list_parameter_may_be_empty(name):
    with pytest.raises(ParamError, match=rf"parameter '{name}'.*value \[\] is not allowed: must be non-empty"):
        params.validate({name: []})


def test_only_lists_that_mean_none_when_empty_may_be_empty():
    assert [n for n, p in REGISTRY.items() if params.MAY_BE_EMPTY in p.validators] == ["top_up_seeds"]
    assert params.validate({"top_up_seeds": []})["top_up_seeds"] == []


@pytest.mark.parametrize("name, value, what", [
    ("learning_rate", params.parse_value("1e999"), "value inf"),
    ("learning_rate", float("nan"), "value nan"),
    ("clip_value", float("-inf"), "value -inf"),
    ("learning_rates", [0.1, float("inf")], "element inf"),
    ("clip_multiples", [float("nan")], "element nan"),
])
def test_non_finite_numbers_are_refused(name, value, what):
    with pytest.raises(ParamError, match=rf"parameter '{name}'.*{what} is not allowed: must be a finite number"):
        params.validate({name: value})


def test_lags_need_a_frame_between_digit_and_answer():
    assert params.validate({"lags": [1, 25]})["lags"] == [1, 25]
    with pytest.raises(ParamError, match=r"'lags'.*element 0 is not allowed: must be >= 1"):
        params.validate({"lags": [0, 5]})


def test_training_memory_estimate():
    # 4 bytes x (8 x 64^2 + 16 x 32 x 10 x 64), counted by hand
    assert cross_checks.training_memory(64, 32, 10) == 4 * (32768 + 327680)
    assert cross_checks.training_memory(128, 32, 10) > cross_checks.training_memory(64, 32, 10)


@pytest.mark.parametrize("values", [
    {"task": "recall", "seq_len": 20, "lag": 0},
    {"task": "recall", "seq_len": 20, "lag": 19},
    {"task": "recall", "seq_len": 20, "lag": None},
    {"task": "count", "seq_len": 5, "lag": 9},  # the count task ignores lag
    {"units": 64, "batch_size": 64, "seq_len": 20, "widths": [64, 256], "lags": [2, 25]},
])
def test_check_chapter_accepts(values):
    cross_checks.check_chapter(values, "ch", budget=2**30)


@pytest.mark.parametrize("values, message", [
    ({"task": "recall", "seq_len": 20, "lag": 20},
     r"ch: parameter 'lag' value 20 is not allowed: must be between 0 and 19 \(the recall task needs lag < seq_len = 20\)"),
    ({"seq_len": 5, "lag": 7}, r"between 0 and 4"),  # recall is the default task
    ({"units": 10**8, "batch_size": 64, "seq_len": 20},
     r"ch: parameter 'units' value 100000000 is too large: the chapter's largest run "
     r"\(units=100000000 \(units\), batch=64 \(batch_size\), T=20 \(seq_len\)\)"),
    # the width sweep's largest width, the probe batch and the longest lag count
    ({"units": 8, "widths": [8, 2**14], "n_probe": 256, "seq_len": 5, "lags": [2, 99]},
     r"parameter 'widths' value 16384 is too large: .*\(units=16384 \(max\(widths\)\), "
     r"batch=256 \(n_probe\), T=100 \(max\(lags\) \+ 1\)\)"),
    # held data: every sequence count adds up
    ({"units": 8, "seq_len": 20, "n_train": 10, "n_val": 10**9, "n_test": 5},
     r"parameter 'n_val' value 1000000000 is too large: .*held sequences=1000000015 \(n_train \+ n_val \+ n_test\)"),
    # a lag is named as a lag (T - 1)
    ({"units": 8, "batch_size": 8, "memo_lag": 10**9}, r"parameter 'memo_lag' value 1000000000 is too large"),
])
def test_check_chapter_refuses(values, message):
    with pytest.raises(ParamError, match=message) as err:
        cross_checks.check_chapter(values, "ch", budget=2**30)
    if "too large" in message:
        assert "GiB" in str(err.value) and "can be at most" in str(err.value)


@pytest.mark.parametrize("values, name", [
    ({"units": 10**6, "batch_size": 64, "seq_len": 20}, "units"),
    ({"units": 64, "batch_size": 10**7, "seq_len": 20}, "batch_size"),
    ({"units": 64, "batch_size": 64, "seq_len": 10**7}, "seq_len"),
    ({"units": 64, "seq_len": 20, "n_train": 10**8, "n_val": 100}, "n_train"),
])
def test_the_limit_named_is_the_largest_value_that_fits(values, name):
    """The limit in the message fits and one more does not (with the other sizes as they are)."""
    budget = 2**30
    with pytest.raises(ParamError) as err:
        cross_checks.check_memory(values, "ch", budget=budget)
    limit = int(re.search(rf"'{name}' can be at most (\d+)", str(err.value)).group(1))
    assert 0 < limit < values[name]
    cross_checks.check_memory({**values, name: limit}, budget=budget)
    with pytest.raises(ParamError):
        cross_checks.check_memory({**values, name: limit + 2}, budget=budget)


def test_every_size_parameter_counts_in_the_memory_check():
    """A registered parameter that sizes a run (units, widths, batches, lengths, lags, sequence counts)
    says which size it is; counts of updates, epochs and seeds do not, nor does a switch (a bool)."""
    sizing = re.compile(r"^(n_[a-z]+|(\w+_)?units|widths|(\w+_)?batch_size|seq_len|\w+_lens|(\w+_)?lags?)$|_n_(train|val|test)$")
    for name, param in REGISTRY.items():
        if sizing.search(name) and param.type is not bool:
            assert param.size in params.SIZES, f"{name} is a size: give it size= in the registry"
        else:
            assert param.size is None, f"{name} is not a size of a run"
    with pytest.raises(ValueError, match="size='bytes' is not one of"):
        Param("x", int, size="bytes")


def test_memory_budget_is_this_machines_memory():
    import os

    assert cross_checks.memory_budget() == os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") > 2**28


@pytest.mark.parametrize("override, message", [
    ("seeds=[]", "parameter 'seeds' (from -p): value [] is not allowed: must be non-empty"),
    ("lags=[]", "parameter 'lags' (from -p): value [] is not allowed: must be non-empty"),
    ("widths=[]", "parameter 'widths' (from -p): value [] is not allowed: must be non-empty"),
    ("learning_rate=1e999", "parameter 'learning_rate' (from -p): value inf is not allowed: must be a finite number"),
    ("lag=20", "chapters/task_and_model: parameter 'lag' value 20 is not allowed: must be between 0 and 19"),
    ("units=100000000", "chapters/task_and_model: parameter 'units' value 100000000 is too large"),
    ("n_val=1e9", "chapters/task_and_model: parameter 'n_val' value 1000000000 is too large"),
    ("repro_units=100000000", "chapters/reproductions: parameter 'repro_units' value 100000000 is too large"),
    ("repro_batch_size=1e9", "chapters/reproductions: parameter 'repro_batch_size' value 1000000000 is too large"),
])
def test_cli_refuses_bad_combinations_before_any_chapter_runs(repo_root, tmp_path, override, message, capsys):
    build_dir = tmp_path / "_build"
    code = cli.main(["build", "--root", str(repo_root), "--build-dir", str(build_dir), "--no-progress",
                     "-p", override])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not build_dir.exists()  # nothing ran
