"""The chapter cache key changes when each of its inputs changes, and only then."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from rnnbook.book import build, chapter_cache
from rnnbook.book.chapter_cache import ChapterCache, cache_key, src_digest

BASE = dict(
    chapter_source=b"# chapter\n```{code-cell}\nseq_len = 20\n```\n",
    params={"seq_len": 5, "learning_rate": 0.001, "activations": ["tanh", "relu"]},
    src="abc123",
    versions={"python": "3.11.7", "tensorflow-cpu": "2.21.0", "keras": "3.15.1"},
    env={"RNNBOOK_PRESET": "quick", "RNNBOOK_OVERRIDES": ""},
)


def key(**changes):
    return cache_key(**{**BASE, **changes})


def test_key_is_stable():
    # same values in another order, or spelled differently, give the same key
    assert key(params={"activations": ["tanh", "relu"], "learning_rate": 1e-3, "seq_len": 5}) == key()
    assert key(chapter_source=BASE["chapter_source"].decode()) == key()
    assert key(versions=dict(reversed(list(BASE["versions"].items())))) == key()


@pytest.mark.parametrize("field, value", [
    ("chapter_source", b"# chapter\n```{code-cell}\nseq_len = 21\n```\n"),
    ("params", {**BASE["params"], "seq_len": 6}),
    ("params", {**BASE["params"], "activations": ["relu", "tanh"]}),
    ("params", {**BASE["params"], "seed": 0}),
    ("src", "abc124"),
    ("versions", {**BASE["versions"], "keras": "3.15.2"}),
    ("versions", {**BASE["versions"], "python": "3.12.0"}),
    ("env", {**BASE["env"], "RNNBOOK_PRESET": "default"}),
])
def test_key_changes_with_each_input(field, value):
    assert key(**{field: value}) != key()


def make_pkg(tmp_path):
    pkg = tmp_path / "rnnbook"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("X = 1\n")
    (pkg / "data.py").write_text("def f():\n    return 1\n")
    return pkg


def test_src_digest_changes_with_source_only(tmp_path):
    pkg = make_pkg(tmp_path)
    d0 = src_digest(pkg)
    # byte code, caches and files outside the package do not count
    (pkg / "__pycache__").mkdir()
    (pkg / "__pycache__" / "data.cpython-311.pyc").write_bytes(b"\0\1")
    (pkg / "data.pyc").write_bytes(b"\0")
    (tmp_path / "README.md").write_text("docs\n")
    assert src_digest(pkg) == d0
    # editing one helper does
    (pkg / "data.py").write_text("def f():\n    return 2\n")
    d1 = src_digest(pkg)
    assert d1 != d0
    # so do adding and renaming a module
    (pkg / "new.py").write_text("")
    d2 = src_digest(pkg)
    assert d2 != d1
    (pkg / "new.py").rename(pkg / "other.py")
    assert src_digest(pkg) != d2


def test_src_digest_is_the_documented_hash(tmp_path):
    """Recomputed by hand: sha256 over (relative path, NUL, bytes, NUL) of each file, sorted."""
    import hashlib

    pkg = make_pkg(tmp_path)
    expected = hashlib.sha256(b"__init__.py\0X = 1\n\0data.py\0def f():\n    return 1\n\0").hexdigest()
    assert src_digest(pkg) == expected


def test_src_digest_defaults_to_the_installed_package(tmp_path):
    import shutil

    import rnnbook

    installed = Path(rnnbook.__file__).parent
    assert chapter_cache.package_dir() == installed
    copy = tmp_path / "rnnbook"
    shutil.copytree(installed, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert src_digest() == src_digest(copy)  # the default reads the installed package's files
    (copy / "data.py").write_text((copy / "data.py").read_text() + "# edited\n")
    assert src_digest(copy) != src_digest()


def test_runtime_packages_are_what_a_chapter_runs_not_the_test_tools():
    names = chapter_cache.runtime_packages()
    for must in ("keras", "numpy", "scipy", "pandas", "lifelines", "papermill", "jupytext", "ipykernel",
                 "jupyter-book", "seaborn", "ml-dtypes"):  # declared, or needed by what is declared
        assert must in names
    assert "tensorflow-cpu" in names or "tensorflow" in names
    for test_tool in ("pytest", "playwright", "greenlet", "ray", "pluggy", "iniconfig"):
        assert test_tool not in names
    assert chapter_cache.runtime_packages("no-such-distribution-xyz") == sorted(
        chapter_cache._norm(n) for n in chapter_cache.DEFAULT_PACKAGES)
    v = chapter_cache.installed_versions(["keras", "no-such-package-xyz"])
    assert v["no-such-package-xyz"] == "absent" and v["keras"] not in ("", "absent") and "python" in v


def test_upgrading_a_test_tool_re_executes_nothing(toy_book, monkeypatch):
    """A new pytest or Playwright keeps every chapter's key; a new NumPy or TensorFlow changes them all."""
    chapters = build.find_chapters(toy_book)
    resolved = build.resolve_parameters(toy_book, chapters, "default", (), ())
    real = chapter_cache.metadata.version

    def keys(bumped=()):
        def version(name):
            v = real(name)
            return v + ".post99" if chapter_cache._norm(name) in bumped else v

        monkeypatch.setattr(chapter_cache.metadata, "version", version)
        return [j.key for j in build.plan(toy_book, chapters, resolved)]

    k0 = keys()
    assert keys({"pytest"}) == keys({"playwright"}) == keys({"greenlet", "ray"}) == k0
    tf = "tensorflow-cpu" if "tensorflow-cpu" in chapter_cache.runtime_packages() else "tensorflow"
    for runtime in ("numpy", tf, "keras", "lifelines"):
        changed = keys({runtime})
        assert all(a != b for a, b in zip(changed, k0)), runtime


def test_moving_the_data_directory_re_keys_every_chapter(toy_book, tmp_path, monkeypatch):
    chapters = build.find_chapters(toy_book)
    resolved = build.resolve_parameters(toy_book, chapters, "default", (), ())

    def keys():
        return [j.key for j in build.plan(toy_book, chapters, resolved)]

    monkeypatch.delenv("RNNBOOK_DATA", raising=False)
    k0 = keys()
    assert chapter_cache.data_key() == {}
    monkeypatch.setenv("RNNBOOK_DATA", str(tmp_path / "elsewhere"))
    k1 = keys()
    assert all(a != b for a, b in zip(k0, k1))
    assert chapter_cache.data_key() == {"RNNBOOK_DATA": str((tmp_path / "elsewhere").resolve())}
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RNNBOOK_DATA", "elsewhere")  # the same folder, relative: the same key
    assert keys() == k1
    monkeypatch.setenv("RNNBOOK_DATA", str(tmp_path / "another"))
    assert keys() != k1
    jobs = build.plan(toy_book, chapters, resolved)  # and the kernels write where the key says
    assert all(j.env["RNNBOOK_DATA"] == str((tmp_path / "another").resolve()) for j in jobs)


def test_plan_keys_follow_chapter_parameters(toy_book):
    """A parameter re-keys only the chapters that declare it."""
    chapters = build.find_chapters(toy_book)

    def keys(*overrides):
        resolved = build.resolve_parameters(toy_book, chapters, "default", (), overrides)
        return {j.chapter.docname: j.key for j in build.plan(toy_book, chapters, resolved)}

    k0 = keys()
    assert keys() == k0
    k1 = keys("seq_len=4")  # declared by boom only
    assert k1["chapters/ok"] == k0["chapters/ok"]
    assert k1["chapters/boom"] != k0["chapters/boom"]
    # editing one chapter re-keys that chapter only
    ok = toy_book / "chapters" / "ok.md"
    ok.write_text(ok.read_text().replace("print('ok', seed)", "print('OK', seed)"))
    k2 = keys()
    assert k2["chapters/ok"] != k0["chapters/ok"]
    assert k2["chapters/boom"] == k0["chapters/boom"]


def test_cache_store(tmp_path):
    cache = ChapterCache(tmp_path / "executed")
    k = key()
    assert cache.get("chapters/a", k) is None
    nb = tmp_path / "a.ipynb"
    nb.write_text("{}")
    path = cache.put("chapters/a", k, nb, {"seconds": 1.5})
    assert cache.get("chapters/a", k) == path
    assert cache.info("chapters/a", k)["seconds"] == 1.5
    assert cache.get("chapters/a", key(src="other")) is None
    assert json.loads(path.read_text()) == {}
