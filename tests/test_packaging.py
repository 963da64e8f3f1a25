"""Install anywhere, pinned everywhere: pyproject.toml declares what the code imports, the extras
hold Ray and the test tools, TensorFlow comes by platform, and the two lock files are complete,
generated, and agree with each other."""
from __future__ import annotations

import ast
import functools
import re
import sys
import tomllib
from importlib import metadata

import pytest
import yaml
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from conftest import ROOT

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
RUNTIME = [Requirement(r) for r in PROJECT["dependencies"]]
EXTRAS = {name: [Requirement(r) for r in reqs] for name, reqs in PROJECT["optional-dependencies"].items()}
LOCKS = {"requirements.txt": ("runtime",), "requirements-all.txt": ("runtime", "ray", "test")}
TEST_TOOLS = {"pytest", "playwright", "greenlet", "ray", "cffconvert"}


def names(reqs) -> set[str]:
    return {canonicalize_name(r.name) for r in reqs}


def imported_modules() -> dict[str, set[str]]:
    """Top-level module -> files of src/rnnbook importing it (not the standard library, not rnnbook)."""
    out: dict[str, set[str]] = {}
    for path in sorted((ROOT / "src" / "rnnbook").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                mods = [node.module]
            else:
                continue
            for mod in mods:
                top = mod.split(".")[0]
                if top not in sys.stdlib_module_names and top != "rnnbook":
                    out.setdefault(top, set()).add(path.name)
    return out


@functools.cache
def _module_distributions() -> dict[str, list[str]]:
    return metadata.packages_distributions()


def distributions_of(module: str) -> set[str]:
    return {canonicalize_name(d) for d in _module_distributions().get(module, [])}


def test_every_direct_import_is_declared():
    declared = names(RUNTIME)
    missing = {}
    for module, files in imported_modules().items():
        dists = distributions_of(module)
        assert dists, f"{module} (imported by {sorted(files)}) is not installed"
        if module == "ray":  # only --executor ray imports it: the [ray] extra
            assert dists <= names(EXTRAS["ray"]) and not dists & declared
        elif not dists & declared:
            missing[module] = sorted(files)
    assert not missing, f"imported but not in [project] dependencies: {missing}"


def test_the_kernel_and_the_sphinx_extensions_of_the_config_are_declared():
    declared = names(RUNTIME)
    assert "ipykernel" in declared  # papermill runs the chapters on the python3 kernel
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    extensions = [e for e in config["sphinx"]["extra_extensions"] if not e.startswith("rnnbook.")]
    assert extensions
    for ext in extensions:
        dists = distributions_of(ext.split(".")[0]) or distributions_of(ext)
        assert dists & declared, f"_config.yml loads {ext}, from {dists or 'nothing installed'}, not declared"
    assert {"sphinxcontrib-bibtex", "jupyter-book", "myst-nb", "docutils", "pybtex"} <= declared
    assert "lifelines" in declared


def test_extras_hold_ray_and_the_test_tools_and_nothing_else_needs_them():
    assert names(EXTRAS["ray"]) == {"ray"}
    assert {"pytest", "playwright", "greenlet", "jsonschema"} <= names(EXTRAS["test"])
    assert not names(RUNTIME) & TEST_TOOLS, "a test tool or Ray is a runtime dependency"


@pytest.mark.parametrize("platform, machine, wheel", [
    ("linux", "x86_64", "tensorflow-cpu"),
    ("win32", "AMD64", "tensorflow-cpu"),
    ("darwin", "arm64", "tensorflow"),
    ("linux", "aarch64", "tensorflow"),
    ("darwin", "x86_64", "tensorflow"),
])
def test_tensorflow_by_platform(platform, machine, wheel):
    env = {"sys_platform": platform, "platform_machine": machine, "python_version": "3.11"}
    chosen = [r.name for r in RUNTIME if r.name.startswith("tensorflow") and r.marker.evaluate(env)]
    assert chosen == [wheel]


def lock(name: str) -> tuple[list[str], dict[tuple[str, str], str]]:
    """The header comments and ``{(name, marker): version}`` of a lock file."""
    header, pins = [], {}
    for line in (ROOT / name).read_text().splitlines():
        if line.startswith("#") and not pins:
            header.append(line)
            continue
        text = line.split(" #", 1)[0].strip()
        if not text or text.startswith("#"):
            continue
        req = Requirement(text)
        (spec,) = req.specifier
        assert spec.operator == "==", f"{name}: {line!r} is not pinned"
        pins[(canonicalize_name(req.name), str(req.marker or ""))] = spec.version
    return header, pins


@pytest.mark.parametrize("name", LOCKS)
def test_locks_are_generated_complete_and_pinned(name):
    header, pins = lock(name)
    command = next((h for h in header if "uv pip compile pyproject.toml" in h), "")
    assert command and f"-o {name}" in command and "--universal" in command, header
    wanted = set(RUNTIME) | {r for extra in LOCKS[name][1:] for r in EXTRAS[extra]}
    locked = {n for n, _ in pins}
    assert names(wanted) <= locked, f"{name} lacks {names(wanted) - locked}"
    assert "cffconvert" not in locked
    if name == "requirements.txt":
        assert not locked & TEST_TOOLS, f"the build's lock holds test tools or Ray: {locked & TEST_TOOLS}"
    else:
        assert "-c requirements.txt" in command  # the extras' lock keeps the build's pins
    # every distribution the lock installs here is pinned, and the packages the book relies on keep the
    # versions it was built with
    here = {n: v for (n, marker), v in pins.items() if not marker or Marker(marker).evaluate()}
    for n, v in {"tensorflow-cpu": "2.21.0", "keras": "3.15.1", "numpy": "2.4.6",
                 "jupyter-book": "1.0.4.post1", "sphinx": "7.4.7"}.items():
        if n in here or sys.platform == "linux":
            assert here.get(n) == v, (n, here.get(n))


def test_the_two_locks_agree():
    _, runtime = lock("requirements.txt")
    _, full = lock("requirements-all.txt")
    assert runtime.keys() <= full.keys()
    assert {k: full[k] for k in runtime} == runtime, "requirements-all.txt moved a pin of requirements.txt"


def test_the_version_is_written_once():
    import rnnbook

    assert "version" not in PROJECT and "version" in PROJECT["dynamic"]
    dynamic = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["dynamic"]
    assert dynamic["version"] == {"attr": "rnnbook.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", rnnbook.__version__)
    try:
        installed = metadata.version("rnnbook")
    except metadata.PackageNotFoundError:
        pytest.skip("rnnbook is not installed")
    assert installed == rnnbook.__version__, "reinstall: pip install -e ."


def test_without_ray_the_ray_executor_says_how_to_install_it(monkeypatch):
    from rnnbook import sweeps

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(sweeps.SweepError, match=r"pip install -e \.\[ray\]"):
        sweeps.RayExecutor().connect()
