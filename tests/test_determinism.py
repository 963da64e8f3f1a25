"""Same parameters, same numbers: the cheapest chapter executed twice with ``--force``, each
time by a fresh ``rnnbook build`` process with its own build and data directories, glues
identical values (numbers, text, tables and figure bytes)."""
import os
import shutil
import subprocess
import sys

import nbformat
import pytest

from conftest import glued

CHAPTER = "chapters/task_and_model"


def one_chapter_book(repo_root, root):
    """The repository's configuration and presets with only ``CHAPTER`` in the table of contents."""
    (root / "chapters").mkdir(parents=True)
    for name in ("_config.yml", "index.md", "references.bib", "requirements.txt", "CITATION.cff"):
        shutil.copy(repo_root / name, root / name)
    shutil.copytree(repo_root / "presets", root / "presets")
    shutil.copy(repo_root / f"{CHAPTER}.md", root / f"{CHAPTER}.md")
    (root / "_toc.yml").write_text(f"format: jb-book\nroot: index\nchapters:\n  - file: {CHAPTER}\n")
    return root


def build_once(root, work):
    env = {**os.environ, "RNNBOOK_DATA": str(work / "data")}
    proc = subprocess.run(
        [sys.executable, "-m", "rnnbook", "build", "--root", str(root), "--preset", "quick", "--force",
         "--no-html", "--no-progress", "--build-dir", str(work / "_build")],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert any((work / "data").rglob("*.npz")), "the chapter did not write into its own data directory"
    (executed,) = (work / "_build" / "executed").glob(f"{CHAPTER.replace('/', '__')}-*.ipynb")
    return glued(nbformat.read(executed, as_version=4))


@pytest.mark.slow
def test_a_chapter_glues_identical_values_in_fresh_processes(repo_root, tmp_path):
    root = one_chapter_book(repo_root, tmp_path / "book")
    first = build_once(root, tmp_path / "one")
    second = build_once(root, tmp_path / "two")
    assert len(first) >= 20, sorted(first)
    assert first.keys() == second.keys()
    differ = [key for key in first if first[key] != second[key]]
    assert not differ, f"values that differ between two executions: {differ}"
