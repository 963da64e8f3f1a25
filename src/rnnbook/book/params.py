"""The book's parameters: one registry, parsing and validation.

Every parameter that a chapter declares in its ``parameters`` cell must have an
entry in :data:`REGISTRY`.  Adding one is a one-line edit::

    Param("seq_len", int, "frames per sequence", positive),
    Param("activations", list[str], "activations to compare", keras_activation),

A ``Param`` has a name, a type (``int``, ``float``, ``str``, ``bool``,
``list[X]``, or a union such as ``int | None``), a one-line description and any
number of validators.  For a ``list[X]`` parameter every element is checked
with the validators; ``None`` is never passed to a validator. Two rules hold for every
parameter without being listed: a list is never empty and a float is finite.

A parameter that sizes a run's memory says which size it is (``size=UNITS``, ``BATCH``,
``FRAMES``, ``LAG`` or ``SEQUENCES``). Rules that tie parameters together (``lag`` below
``seq_len``, the memory of a chapter's largest run, from its sized parameters) are checked per
chapter by :func:`rnnbook.book.cross_checks.check_chapter`, on the values the chapter will run with.

Parameter text from the command line or YAML files is parsed as *data*
(``ast.literal_eval`` / ``yaml.safe_load``), never executed.
"""
from __future__ import annotations

import ast
import difflib
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import yaml

from rnnbook.choices import CLIP_MODES, GATED_CONFIGS, RECURRENT_INITIALIZERS, TASKS


class ParamError(ValueError):
    """A parameter is unknown, of the wrong type or has an impossible value."""


def interface_level(value: Any) -> None:
    """A CNN-to-RNN interface level key (:func:`rnnbook.experiments.relu.interface.parse_interface`):
    ``keras``, ``he``, optionally with ``*<scale>``, ``@<gain>`` or ``+ln``."""
    from rnnbook.experiments.relu.interface import parse_interface

    try:
        parse_interface(value)
    except ValueError as exc:
        raise ValueError(f"must be an interface level: {exc}") from None


# --------------------------------------------------------------------------
# Validators: callables that raise ValueError("must be ...") on a bad value.
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class Check:
    """A named predicate; ``allowed`` says in words what passes."""

    test: Callable[[Any], bool]
    allowed: str

    def __call__(self, value: Any) -> None:
        if not self.test(value):
            raise ValueError(f"must be {self.allowed}")


positive = Check(lambda v: v > 0, "> 0")
non_negative = Check(lambda v: v >= 0, ">= 0")
non_empty = Check(lambda v: len(v) > 0, "non-empty")
#: Listed among a list parameter's validators, it lets the list be empty (``[]`` means "none").
MAY_BE_EMPTY = Check(lambda v: True, "anything")
finite = Check(lambda v: math.isfinite(v), "a finite number")


def one_of(*choices: Any) -> Check:
    return Check(lambda v: v in choices, "one of " + ", ".join(map(str, choices)))


def in_range(lo: float, hi: float) -> Check:
    return Check(lambda v: lo <= v <= hi, f"between {lo} and {hi}")


def at_least(lo: float) -> Check:
    return Check(lambda v: v >= lo, f">= {lo}")


clip_mode = one_of(*CLIP_MODES)
recurrent_init = one_of(*RECURRENT_INITIALIZERS)


def keras_activation(value: Any) -> None:
    """The name must be an activation that ``keras.activations.get`` knows."""
    ok = isinstance(value, str) and value.strip() != ""
    if ok:
        keras = _import_keras()
        try:
            keras.activations.get(value)
        except (ValueError, TypeError):
            ok = False
    if not ok:
        raise ValueError(
            "must be an activation name that Keras knows "
            "(keras.activations.get(name) succeeds), e.g. tanh, relu, sigmoid, linear, elu, gelu"
        )


def _import_keras():
    """Import Keras lazily (it costs seconds), keeping TensorFlow's C++ start-up
    logs (written straight to file descriptor 2) off the terminal."""
    import sys

    if "keras" in sys.modules:
        return sys.modules["keras"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            try:
                import keras
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)
    return keras


def rnn_config(value: Any) -> None:
    """``"<activation>-<initializer>"`` (a Keras activation; an initializer of
    :data:`rnnbook.choices.RECURRENT_INITIALIZERS`), or a gated key of
    :data:`rnnbook.choices.GATED_CONFIGS` (``gru``, ``lstm``, ``lstm-chrono``): a configuration of the trained chapters."""
    if isinstance(value, str) and value.strip().lower() in GATED_CONFIGS:
        return
    act, sep, init = value.strip().lower().partition("-") if isinstance(value, str) else ("", "", "")
    if not sep or init not in RECURRENT_INITIALIZERS:
        raise ValueError(
            f"must be '<activation>-<initializer>' with initializer {', '.join(RECURRENT_INITIALIZERS)} "
            f"(e.g. relu-identity), or one of {', '.join(GATED_CONFIGS)}"
        )
    keras_activation(act)


# --------------------------------------------------------------------------
# The registry
# --------------------------------------------------------------------------
#: The sizes of a run that a parameter can give, for the memory check of a chapter
#: (:func:`rnnbook.book.cross_checks.check_chapter`): hidden units, sequences per step, frames
#: per sequence, a recall lag (lag + 1 frames), sequences held in memory (data sets).
SIZES = UNITS, BATCH, FRAMES, LAG, SEQUENCES = ("units", "batch", "frames", "lag", "sequences")


@dataclass(frozen=True, init=False)
class Param:
    name: str
    type: Any
    description: str
    validators: tuple = field(default=())
    size: str | None = None  # one of SIZES when the parameter sizes a run's memory

    def __init__(self, name: str, type: Any, description: str, *validators: Callable[[Any], None],
                 size: str | None = None):
        if size not in (None, *SIZES):
            raise ValueError(f"parameter {name!r}: size={size!r} is not one of {', '.join(SIZES)}")
        object.__setattr__(self, "size", size)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "type", type)
        object.__setattr__(self, "description", description)
        object.__setattr__(self, "validators", tuple(validators))

    @property
    def type_name(self) -> str:
        return type_name(self.type)

    def check(self, value: Any, source: str = "") -> Any:
        """Return ``value`` normalised (int -> float, tuple -> list, "a,b" -> list);
        raise :class:`ParamError` naming the parameter and what is allowed."""
        where = f"parameter {self.name!r}" + (f" (from {source})" if source else "")
        try:
            value = coerce(self.type, value)
        except TypeError as exc:
            raise ParamError(f"{where}: {exc}; expected {self.type_name} ({self.description})") from None
        items = value if isinstance(value, list) else [value]
        if isinstance(value, list) and MAY_BE_EMPTY not in self.validators:
            _apply(non_empty, value, f"{where}: value []", self.description)
        for item in items:
            if item is None:
                continue
            what = f"element {item!r}" if isinstance(value, list) else f"value {item!r}"
            if isinstance(item, float):
                _apply(finite, item, f"{where}: {what}", self.description)
            for validate in self.validators:
                if validate is not MAY_BE_EMPTY:
                    _apply(validate, item, f"{where}: {what}", self.description)
        return value


def _apply(validate: Callable[[Any], None], value: Any, what: str, description: str) -> None:
    """Run one validator; turn its ValueError into a ParamError saying what is allowed."""
    try:
        validate(value)
    except ValueError as exc:
        raise ParamError(f"{what} is not allowed: {exc} ({description})") from None


def _registry(*params: Param) -> dict[str, Param]:
    out: dict[str, Param] = {}
    for p in params:
        if p.name in out:
            raise RuntimeError(f"parameter {p.name!r} registered twice")
        out[p.name] = p
    return out


#: name -> Param, for every parameter of every chapter.  Keep it sorted by topic.
REGISTRY: dict[str, Param] = _registry(
    # the task and the data
    Param("task", str, "which sequence task: recall or count", one_of(*TASKS)),
    Param("seq_len", int, "frames per sequence", positive, size=FRAMES),
    Param("lag", int | None, "recall task: steps before the end of the frame to recall (None: task default)", non_negative, size=LAG),
    Param("n_train", int, "training sequences", positive, size=SEQUENCES),
    Param("n_val", int, "validation sequences", positive, size=SEQUENCES),
    Param("n_test", int, "test sequences", positive, size=SEQUENCES),
    Param("n_examples", int, "example sequences shown in figures", positive, size=SEQUENCES),
    # the model
    Param("units", int, "hidden units of the recurrent layer", positive, size=UNITS),
    Param("activation", str, "activation of the SimpleRNN cell", keras_activation),
    Param("activations", list[str], "activations of the SimpleRNN cell to compare", keras_activation),
    Param("recurrent_gains", list[float], "gains of the recurrent initialiser to compare", positive),
    Param("recurrent_initializer", str, "recurrent initialiser of the SimpleRNN", recurrent_init),
    Param("recurrent_initializers", list[str], "recurrent initialisers of the SimpleRNN to compare", recurrent_init),
    Param("input_scales", list[float], "factors multiplying the CNN features fed to the RNN (1: as they are)", positive),
    Param("n_probe", int, "held-out sequences the state and gradient measurements run on", positive, size=BATCH),
    Param("train_gains", list[float], "recurrent gains of the configurations trained briefly", positive),
    Param("rnn_configs", list[str], "recurrent configurations trained and compared: activation-initializer, gru or lstm", rnn_config),
    Param("lags", list[int], "recall task: time lags to sweep (frames between the digit and the answer; T = lag + 1)", at_least(1), size=LAG),
    Param("widths", list[int], "numbers of hidden units of the width sweep", positive, size=UNITS),
    Param("interfaces", list[str], "CNN-to-RNN interface levels of the lag sweep: keras (the Keras defaults, the baseline), he (He-uniform encoder), with *<scale>, @<input gain> or +ln", interface_level),
    Param("ablation_interfaces", list[str], "interface levels of the interface ablation (see interfaces)", interface_level),
    Param("ablation_lag", int, "recall lag of the interface ablation", at_least(1), size=LAG),
    Param("ablation_seeds", list[int], "seeds of the interface ablation", non_negative),
    Param("budget_caps", list[int], "relu chapter: caps of the budget ladder, at which every verdict and reach is read again from the same runs", at_least(1)),
    Param("rerun_samples", int, "shipped reference runs a build re-runs and compares with their records", at_least(1)),
    Param("rerun_updates", int, "updates of each re-run of a shipped reference run (its checks up to there are compared)", at_least(1)),
    Param("top_up_seeds", list[int], "relu chapter: seeds added at every lag-sweep point where some but not all seeds succeeded (may be [] for none)", non_negative, MAY_BE_EMPTY),
    Param("lag_ladder", bool, "relu chapter: a configuration's lag sweep stops after the first lag at which no seed met the criterion"),
    Param("tuning_learning_rates", list[float], "Adam learning rates each configuration of the lag sweep is tuned over", positive),
    Param("tuning_seeds", list[int], "seeds of the learning-rate tuning runs (never used by a verdict)", non_negative),
    Param("tuning_lag", int, "recall lag of the learning-rate tuning runs", at_least(1), size=LAG),
    Param("max_updates", int, "cap of a criterion run: updates before it is censored", positive),
    Param("clip_max_updates", int, "cap of a run of the clipping chapter: updates before it is censored", positive),
    Param("check_every", int, "updates between two validation checks of a criterion run", positive),
    Param("target_fraction", float, "success criterion: validation accuracy as a share of the encoder's ceiling", in_range(0.0, 1.0)),
    Param("memo_lag", int, "time lag of the memorisation comparison (fixed set vs fresh sequences)", at_least(1), size=LAG),
    Param("memo_n_train", int, "size of the fixed training set of the memorisation comparison", positive, size=SEQUENCES),
    Param("stability_lag", int, "time lag of the learning-rate and width sweeps", at_least(1), size=LAG),
    Param("stability_max_updates", int, "cap of the learning-rate and width sweeps", positive),
    Param("ceiling_epochs", int, "epochs of the CNN alone on single images, whose test accuracy is the encoder's ceiling", positive),
    # training
    Param("learning_rate", float, "optimizer learning rate", positive),
    Param("epochs", int, "training epochs per run", positive),
    Param("batch_size", int, "sequences per mini-batch", positive, size=BATCH),
    Param("clip_modes", list[str], "gradient clipping modes to compare", clip_mode),
    Param("clip_value", float, "clipping threshold (norm or value)", positive),
    Param("learning_rates", list[float], "SGD learning rates of the stability sweep", positive),
    Param("width_learning_rate", float, "Adam learning rate of the width sweep", positive),
    Param("clip_multiples", list[float], "global_clipnorm thresholds as multiples of the average gradient norm of the stable pilot", positive),
    Param("clip_multiple", float, "clipping chapter: global_clipnorm threshold of the comparison (against no clipping, the matched-step control and the step-matched options), as a multiple of the pilot's average norm", positive),
    Param("explode_learning_rates", list[float], "clipping chapter: the explosion search's grid of unclipped SGD learning rates, raised in increasing order until at least half the pilot seeds explode", positive),
    Param("clip_seeds", list[int], "clipping chapter: random seeds of the comparison, one run each per arm", non_negative),
    Param("clip_pilot_seeds", list[int], "clipping chapter: random seeds of the pilots (average norm, explosion search, step probes), apart from clip_seeds", non_negative),
    Param("clip_lag", int, "clipping chapter: recall lag of the exploding setting (T = lag + 1)", at_least(1), size=LAG),
    Param("clip_scale", float, "clipping chapter: feature scale (CNN-to-RNN interface) of the exploding setting", positive),
    Param("target_acc", float, "clipping chapter: validation accuracy that counts as success", in_range(0.0, 1.0)),
    Param("pilot_learning_rate", float, "clipping chapter: SGD learning rate of the stable pilot run that measures the average gradient norm", positive),
    Param("pilot_updates", int, "clipping chapter: updates of each stable pilot run (the average norm is over all of them and the pilot seeds) and of each step probe", positive),
    # chapters/reproductions: the adding problem and the temporal-order task (rnnbook.synthetic)
    Param("repro_seeds", list[int], "reproductions chapter: random seeds, one run each per configuration and T", non_negative),
    Param("repro_adding_lens", list[int], "reproductions chapter: sequence lengths T of the adding problem", at_least(2), size=FRAMES),
    Param("repro_adding_configs", list[str], "reproductions chapter: recurrent configurations trained on the adding problem (SGD + clipping; tanh-normal: Pascanu et al.'s basic tanh)", rnn_config),
    Param("repro_order_lens", list[int], "reproductions chapter: sequence lengths T of the temporal-order task", at_least(10), size=FRAMES),
    Param("repro_order_configs", list[str], "reproductions chapter: temporal order, configurations trained with SGD + clipping besides Pascanu et al.'s basic tanh (tanh-normal) with and without clipping", rnn_config),
    Param("repro_units", int, "reproductions chapter: hidden units of the recurrent layer", positive, size=UNITS),
    Param("repro_batch_size", int, "reproductions chapter: fresh sequences per update", positive, size=BATCH),
    Param("repro_learning_rate", float, "reproductions chapter: SGD learning rate (no momentum)", positive),
    Param("repro_clip", float, "reproductions chapter: global_clipnorm threshold of the clipped arms", positive),
    Param("repro_input_std", float, "reproductions chapter: standard deviation of the normal input-kernel initialiser", positive),
    Param("repro_max_updates", int, "reproductions chapter: cap of a run, updates before it is censored", positive),
    Param("repro_check_every", int, "reproductions chapter: updates between two checks on the held-out set", positive),
    Param("repro_n_val", int, "reproductions chapter: held-out sequences of each check (the 1 % criterion)", positive, size=SEQUENCES),
    Param("repro_n_test", int, "reproductions chapter: test sequences", positive, size=SEQUENCES),
    # repetition
    Param("seed", int, "random seed", non_negative),
    Param("seeds", list[int], "random seeds, one run each", non_negative),
)


# --------------------------------------------------------------------------
# Types
# --------------------------------------------------------------------------
def _union_args(tp: Any) -> tuple | None:
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        return typing.get_args(tp)
    return None


def type_name(tp: Any) -> str:
    args = _union_args(tp)
    if args is not None:
        return " | ".join(type_name(a) for a in args)
    if tp is type(None) or tp is None:
        return "None"
    if typing.get_origin(tp) is list:
        (inner,) = typing.get_args(tp) or (Any,)
        return f"list[{type_name(inner)}]"
    return getattr(tp, "__name__", str(tp))


def coerce(tp: Any, value: Any) -> Any:
    """Check ``value`` against ``tp``; return it normalised or raise TypeError."""
    args = _union_args(tp)
    if args is not None:
        for a in args:
            try:
                return coerce(a, value)
            except TypeError:
                pass
        raise TypeError(f"got {_describe(value)}")
    if tp is None or tp is type(None):
        if value is None:
            return None
        raise TypeError(f"got {_describe(value)}")
    if typing.get_origin(tp) is list:
        (inner,) = typing.get_args(tp) or (Any,)
        if isinstance(value, str) and "," in value:
            value = [parse_value(v.strip()) for v in value.split(",") if v.strip()]
        elif isinstance(value, tuple):
            value = list(value)
        elif not isinstance(value, list):
            value = [value]  # a single value is a one-element list
        out = []
        for item in value:
            try:
                out.append(coerce(inner, item))
            except TypeError:
                raise TypeError(f"element {item!r} is {_describe(item)}") from None
        return out
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise TypeError(f"got {_describe(value)}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise TypeError(f"got {_describe(value)}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise TypeError(f"got {_describe(value)}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise TypeError(f"got {_describe(value)}")
    if isinstance(value, tp):
        return value
    raise TypeError(f"got {_describe(value)}")


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


# --------------------------------------------------------------------------
# Parsing text as data
# --------------------------------------------------------------------------
class _Loader(yaml.SafeLoader):
    """Safe YAML loader that also reads ``1e-3`` as a float (YAML 1.1 does not)."""


_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
_Loader.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


def load_yaml_text(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def parse_value(text: str) -> Any:
    """Parse one ``-p`` value the way papermill does, as data only.

    Python literals first (``20``, ``1e-3``, ``None``, ``[1, 2]``), then YAML
    (``tanh``, ``[tanh, relu]``, ``true``); anything else stays a string.
    """
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        pass
    try:
        return load_yaml_text(text)
    except yaml.YAMLError:
        return text


def parse_assignment(text: str) -> tuple[str, Any]:
    """``"seq_len=20"`` -> ``("seq_len", 20)``."""
    if "=" not in text:
        raise ParamError(f"-p expects NAME=VALUE, got {text!r}")
    name, _, value = text.partition("=")
    name = name.strip()
    if not name.isidentifier():
        raise ParamError(f"-p {text!r}: {name!r} is not a parameter name")
    return name, parse_value(value.strip())


def load_yaml_file(path: str | Path) -> dict[str, Any]:
    """Safe-load a mapping of parameters from a YAML file (empty file -> {})."""
    path = Path(path)
    try:
        data = load_yaml_text(path.read_text())
    except FileNotFoundError:
        raise ParamError(f"parameter file {str(path)!r} does not exist") from None
    except yaml.YAMLError as exc:
        raise ParamError(f"parameter file {str(path)!r} is not valid (safe) YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise ParamError(f"parameter file {str(path)!r} must hold a mapping of name: value")
    return data


# --------------------------------------------------------------------------
# A chapter's parameters cell
# --------------------------------------------------------------------------
@dataclass
class Declared:
    """The parameters one chapter declares: name -> default (a literal)."""

    chapter: str
    defaults: dict[str, Any]


def parse_parameters_source(source: str, where: str = "<parameters cell>") -> dict[str, Any]:
    """Names and literal defaults assigned in a ``parameters`` cell (never executed)."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise ParamError(f"{where}: parameters cell is not valid Python: {exc}") from None
    out: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name, value = node.targets[0].id, node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            name, value = node.target.id, node.value
        else:
            raise ParamError(
                f"{where}: the parameters cell may only hold `name = literal` lines, found: "
                f"{ast.unparse(node)!r}"
            )
        try:
            out[name] = ast.literal_eval(value)
        except ValueError:
            raise ParamError(f"{where}: default of {name!r} must be a literal, got {ast.unparse(value)!r}") from None
    return out


def notebook_parameters_cell(nb: Any, where: str) -> tuple[int, str]:
    """Index and source of the single cell tagged ``parameters``."""
    hits = [
        (i, c) for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and "parameters" in c.get("metadata", {}).get("tags", [])
    ]
    if len(hits) != 1:
        raise ParamError(f"{where}: needs exactly one code cell tagged 'parameters', found {len(hits)}")
    i, cell = hits[0]
    return i, cell.source


def declared_parameters(path: str | Path, nb: Any = None) -> dict[str, Any]:
    """Parameters (name -> default) declared by a chapter file (.md via jupytext, or .ipynb)."""
    if nb is None:
        nb = read_notebook(path)
    _, source = notebook_parameters_cell(nb, str(path))
    return parse_parameters_source(source, str(path))


def read_notebook(path: str | Path):
    import jupytext

    return jupytext.read(str(path))


# --------------------------------------------------------------------------
# Resolution and validation
# --------------------------------------------------------------------------
def suggest(name: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(candidates), n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else ""


def validate(
    values: Mapping[str, Any],
    declared: Mapping[str, Iterable[str]] | None = None,
    registry: Mapping[str, Param] = REGISTRY,
    source: str = "",
) -> dict[str, Any]:
    """Check supplied ``values`` and return them normalised.

    ``declared`` maps chapter -> names it declares; a name that no chapter
    declares is unknown.  Raises :class:`ParamError` on the first problem.
    """
    declared = declared if declared is not None else {"*": registry.keys()}
    valid = {n for names in declared.values() for n in names}
    out = {}
    src = f" (from {source})" if source else ""
    for name, value in values.items():
        if name not in registry:
            raise ParamError(
                f"unknown parameter {name!r}{src}{suggest(name, valid or registry)} "
                f"(`rnnbook build --list-params` lists them all)"
            )
        if name not in valid:
            raise ParamError(
                f"parameter {name!r}{src} is declared by no chapter in _toc.yml; "
                f"valid here: {', '.join(sorted(valid))}"
            )
        out[name] = registry[name].check(value, source)
    return out


def resolve(
    preset: Mapping[str, Any] | None,
    files: Iterable[Mapping[str, Any]] = (),
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Merge preset < files (in order) < -p overrides."""
    out: dict[str, Any] = dict(preset or {})
    for f in files:
        out.update(f)
    out.update(overrides or {})
    return out


def for_chapter(values: Mapping[str, Any], declared_names: Iterable[str]) -> dict[str, Any]:
    """The subset of ``values`` a chapter declares, sorted by name."""
    names = set(declared_names)
    return {k: values[k] for k in sorted(values) if k in names}


def presets_dir(root: str | Path) -> Path:
    return Path(root) / "presets"


def available_presets(root: str | Path) -> list[str]:
    return sorted(p.stem for p in presets_dir(root).glob("*.yaml"))


def load_preset(root: str | Path, name: str) -> dict[str, Any]:
    path = presets_dir(root) / f"{name}.yaml"
    if not path.exists():
        names = available_presets(root)
        raise ParamError(f"unknown preset {name!r}{suggest(name, names)}; presets: {', '.join(names)}")
    return load_yaml_file(path)
