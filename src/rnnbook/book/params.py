"""The book's parameters: one registry, parsing and validation.

A parameter is written in two places, each saying what only it can: the chapter's
``parameters`` cell gives its default and, in the comment that ends its line, its meaning
(the one place a description is written: ``rnnbook build --list-params`` and the error
messages read it from there, :mod:`rnnbook.book.parameters_cell`)::

    seq_len = 20  # frames per sequence, T

and :data:`REGISTRY` gives what a cell cannot: its type and the rules a value must obey.
Every parameter a chapter declares must have an entry there.  Adding one is a one-line edit::

    Param("seq_len", int, positive, size=FRAMES),
    Param("activations", list[str], keras_activation),

A ``Param`` has a name, a type (``int``, ``float``, ``str``, ``bool``,
``list[X]``, or a union such as ``int | None``) and any
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
    """A parameter's type and rules; its meaning is written in the chapters' ``parameters`` cells."""

    name: str
    type: Any
    validators: tuple = field(default=())
    size: str | None = None  # one of SIZES when the parameter sizes a run's memory

    def __init__(self, name: str, type: Any, *validators: Callable[[Any], None], size: str | None = None):
        if size not in (None, *SIZES):
            raise ValueError(f"parameter {name!r}: size={size!r} is not one of {', '.join(SIZES)}")
        if any(isinstance(v, str) for v in validators):
            raise TypeError(f"parameter {name!r}: a description belongs in the chapter's parameters cell "
                            f"(the comment ending the parameter's line), not in the registry")
        object.__setattr__(self, "size", size)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "type", type)
        object.__setattr__(self, "validators", tuple(validators))

    @property
    def type_name(self) -> str:
        return type_name(self.type)

    def check(self, value: Any, source: str = "", description: str = "") -> Any:
        """Return ``value`` normalised (int -> float, tuple -> list, "a,b" -> list);
        raise :class:`ParamError` naming the parameter, what is allowed and (when given) what
        the parameter means (``description``, from a chapter's parameters cell)."""
        where = f"parameter {self.name!r}" + (f" (from {source})" if source else "")
        meaning = f" ({description})" if description else ""
        try:
            value = coerce(self.type, value)
        except TypeError as exc:
            raise ParamError(f"{where}: {exc}; expected {self.type_name}{meaning}") from None
        items = value if isinstance(value, list) else [value]
        if isinstance(value, list) and MAY_BE_EMPTY not in self.validators:
            _apply(non_empty, value, f"{where}: value []", description)
        for item in items:
            if item is None:
                continue
            what = f"element {item!r}" if isinstance(value, list) else f"value {item!r}"
            if isinstance(item, float):
                _apply(finite, item, f"{where}: {what}", description)
            for validate in self.validators:
                if validate is not MAY_BE_EMPTY:
                    _apply(validate, item, f"{where}: {what}", description)
        return value


def _apply(validate: Callable[[Any], None], value: Any, what: str, description: str = "") -> None:
    """Run one validator; turn its ValueError into a ParamError saying what is allowed (and, when
    given, what the value means)."""
    try:
        validate(value)
    except ValueError as exc:
        raise ParamError(f"{what} is not allowed: {exc}" + (f" ({description})" if description else "")) from None


def _registry(*params: Param) -> dict[str, Param]:
    out: dict[str, Param] = {}
    for p in params:
        if p.name in out:
            raise RuntimeError(f"parameter {p.name!r} registered twice")
        out[p.name] = p
    return out


#: name -> Param, for every parameter of every chapter: its type and rules (its meaning is the comment
#: ending its line in the chapters' parameters cells).  Keep it sorted by topic.
REGISTRY: dict[str, Param] = _registry(
    # the task and the data
    Param("task", str, one_of(*TASKS)),
    Param("seq_len", int, positive, size=FRAMES),
    Param("lag", int | None, non_negative, size=LAG),
    Param("n_train", int, positive, size=SEQUENCES),
    Param("n_val", int, positive, size=SEQUENCES),
    Param("n_test", int, positive, size=SEQUENCES),
    Param("n_examples", int, positive, size=SEQUENCES),
    # the model
    Param("units", int, positive, size=UNITS),
    Param("activation", str, keras_activation),
    Param("activations", list[str], keras_activation),
    Param("recurrent_gains", list[float], positive),
    Param("recurrent_initializer", str, recurrent_init),
    Param("recurrent_initializers", list[str], recurrent_init),
    Param("input_scales", list[float], positive),
    Param("n_probe", int, positive, size=BATCH),
    Param("train_gains", list[float], positive),
    Param("rnn_configs", list[str], rnn_config),
    Param("lags", list[int], at_least(1), size=LAG),
    Param("widths", list[int], positive, size=UNITS),
    Param("interfaces", list[str], interface_level),
    Param("ablation_interfaces", list[str], interface_level),
    Param("ablation_lag", int, at_least(1), size=LAG),
    Param("ablation_seeds", list[int], non_negative),
    Param("budget_caps", list[int], at_least(1)),
    Param("rerun_samples", int, at_least(1)),
    Param("rerun_updates", int, at_least(1)),
    Param("top_up_seeds", list[int], non_negative, MAY_BE_EMPTY),
    Param("lag_ladder", bool),
    Param("collapse_seeds", list[int], non_negative),
    Param("collapse_lag_count", int, at_least(1)),
    Param("collapse_clip_multiple", float, positive),
    Param("collapse_next_lag", bool),
    Param("collapse_stopped", bool),
    Param("tuning_learning_rates", list[float], positive),
    Param("tuning_seeds", list[int], non_negative),
    Param("tuning_lag", int, at_least(1), size=LAG),
    Param("max_updates", int, positive),
    Param("clip_max_updates", int, positive),
    Param("check_every", int, positive),
    Param("target_fraction", float, in_range(0.0, 1.0)),
    Param("memo_lag", int, at_least(1), size=LAG),
    Param("memo_n_train", int, positive, size=SEQUENCES),
    Param("stability_lag", int, at_least(1), size=LAG),
    Param("stability_max_updates", int, positive),
    Param("ceiling_epochs", int, positive),
    # training
    Param("learning_rate", float, positive),
    Param("epochs", int, positive),
    Param("batch_size", int, positive, size=BATCH),
    Param("clip_modes", list[str], clip_mode),
    Param("clip_value", float, positive),
    Param("learning_rates", list[float], positive),
    Param("width_learning_rate", float, positive),
    Param("clip_multiples", list[float], positive),
    Param("clip_multiple", float, positive),
    Param("explode_learning_rates", list[float], positive),
    Param("clip_seeds", list[int], non_negative),
    Param("clip_pilot_seeds", list[int], non_negative),
    Param("clip_lag", int, at_least(1), size=LAG),
    Param("clip_scale", float, positive),
    Param("target_acc", float, in_range(0.0, 1.0)),
    Param("pilot_learning_rate", float, positive),
    Param("pilot_updates", int, positive),
    # chapters/reproductions: the adding problem and the temporal-order task (rnnbook.synthetic)
    Param("repro_seeds", list[int], non_negative),
    Param("repro_adding_lens", list[int], at_least(2), size=FRAMES),
    Param("repro_adding_configs", list[str], rnn_config),
    Param("repro_order_lens", list[int], at_least(10), size=FRAMES),
    Param("repro_order_configs", list[str], rnn_config),
    Param("repro_units", int, positive, size=UNITS),
    Param("repro_batch_size", int, positive, size=BATCH),
    Param("repro_learning_rate", float, positive),
    Param("repro_clip", float, positive),
    Param("repro_input_std", float, positive),
    Param("repro_max_updates", int, positive),
    Param("repro_check_every", int, positive),
    Param("repro_n_val", int, positive, size=SEQUENCES),
    Param("repro_n_test", int, positive, size=SEQUENCES),
    # repetition
    Param("seed", int, non_negative),
    Param("seeds", list[int], non_negative),
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
    descriptions: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Check supplied ``values`` and return them normalised.

    ``declared`` maps chapter -> names it declares; a name that no chapter
    declares is unknown.  ``descriptions`` (name -> what it means, from the chapters'
    parameters cells) goes into the messages.  Raises :class:`ParamError` on the first problem.
    """
    descriptions = descriptions or {}
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
        out[name] = registry[name].check(value, source, descriptions.get(name, ""))
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
