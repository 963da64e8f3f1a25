"""The layout a newcomer finds their way in: one module per chapter, the science apart from the
book machinery, short modules, and a chapter cache that follows what a chapter can import."""
import ast
from pathlib import Path

import pytest

from rnnbook.book import build, chapter_cache

from conftest import ROOT

PKG = ROOT / "src" / "rnnbook"


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


SCIENCE = sorted(p for p in PKG.glob("*.py") if p.name != "__main__.py")


@pytest.mark.parametrize("path", SCIENCE, ids=lambda p: p.name)
def test_science_never_imports_the_book_or_the_chapters(path):
    bad = {n for n in _imports(path) if n.startswith(("rnnbook.book", "rnnbook.experiments"))}
    assert not bad, f"{path.name} imports {sorted(bad)}"


def test_chapter_modules_never_import_the_build_machinery():
    for path in (PKG / "experiments").rglob("*.py"):
        bad = {n for n in _imports(path) if n.startswith("rnnbook.book")}
        assert not bad, f"{path.name} imports {sorted(bad)}"


def test_one_module_or_package_per_executable_chapter():
    chapters = [c.title for c in build.find_chapters(ROOT)]
    assert chapters, "no executable chapter in _toc.yml"
    for title in chapters:
        module, package = PKG / "experiments" / f"{title}.py", PKG / "experiments" / title / "__init__.py"
        assert module.is_file() != package.is_file(), f"no src/rnnbook/experiments/{title}.py or {title}/ package"


#: Modules of experiments/ that serve several chapters (the rest belong to one chapter's package).
SHARED = {"__init__", "common", "probes", "reruns"}


def test_a_chapter_split_over_several_modules_is_a_package_named_after_it():
    chapters = {c.title for c in build.find_chapters(ROOT)}
    loose = {p.stem for p in (PKG / "experiments").glob("*.py")} - chapters - SHARED
    assert not loose, f"chapter code outside its chapter's package: {sorted(loose)}"


@pytest.mark.parametrize("path", sorted(PKG.rglob("*.py")), ids=lambda p: str(p.relative_to(PKG)))
def test_no_module_exceeds_600_lines(path):
    assert len(path.read_text().splitlines()) <= 600


def _copy_package(tmp_path: Path) -> Path:
    import shutil

    dest = tmp_path / "rnnbook"
    shutil.copytree(PKG, dest, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


@pytest.mark.parametrize("edited", ["book/cli.py", "book/build.py", "book/params.py", "book/parameters_cell.py",
                                    "book/chapter_cache.py"])
def test_editing_the_build_command_keeps_every_chapter_cached(tmp_path, edited):
    pkg = _copy_package(tmp_path)
    before = chapter_cache.src_digest(pkg)
    with open(pkg / edited, "a") as f:
        f.write("\n# an edit that cannot change a number on a page\n")
    assert chapter_cache.src_digest(pkg) == before


@pytest.mark.parametrize("edited", ["training.py", "experiments/relu/__init__.py", "experiments/relu/claims.py",
                                    "experiments/common.py", "book/pages.py",
                                    "book/provenance.py", "book/figures.py"])
def test_editing_what_a_chapter_imports_re_executes_it(tmp_path, edited):
    pkg = _copy_package(tmp_path)
    before = chapter_cache.src_digest(pkg)
    with open(pkg / edited, "a") as f:
        f.write("\n# an edit\n")
    assert chapter_cache.src_digest(pkg) != before
