"""Command-line conventions: ``--version``, errors on stderr, progress bars only on a terminal."""
from __future__ import annotations

import subprocess
import sys

import pytest

import rnnbook
from rnnbook.book import build, cli


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0
    out, err = capsys.readouterr()
    assert out == f"rnnbook {rnnbook.__version__}\n" and err == ""


def test_version_of_the_console_script():
    proc = subprocess.run([sys.executable, "-m", "rnnbook", "--version"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == f"rnnbook {rnnbook.__version__}"


@pytest.mark.parametrize("args, code, message", [
    (["build", "--no-such-option"], 2, "unrecognized arguments"),
    (["build", "-p", "sed=1"], 2, "did you mean 'seed'"),
    (["build", "--only", "nope"], 2, "--only: no chapter 'nope'"),
    (["build", "--build-dir", "elsewhere"], 1, "--build-dir must be a directory named _build"),
])
def test_errors_go_to_stderr(toy_book, capsys, args, code, message):
    try:
        result = cli.main([*args, "--root", str(toy_book), "--no-html"])
    except SystemExit as exit_:  # argparse
        result = exit_.code
    assert result == code
    out, err = capsys.readouterr()
    assert message in err and message not in out


def test_no_book_is_an_error_on_stderr(tmp_path, capsys):
    assert cli.main(["build", "--root", str(tmp_path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "no _toc.yml" in err


def test_a_failed_html_build_says_so_on_stderr(toy_book, monkeypatch, capsys):
    boom = toy_book / "chapters" / "boom.md"
    boom.write_text(boom.read_text().replace("raise ValueError(f'boom at {seq_len}')", "print(seq_len)"))
    monkeypatch.setattr(build, "run_jupyter_book", lambda *a, **k: 1)
    assert cli.main(["build", "--root", str(toy_book), "--no-progress"]) == 1
    out, err = capsys.readouterr()
    assert "jupyter-book build failed" in err and "jupyter-book build failed" not in out


class _Stream:
    def __init__(self, tty):
        self.tty = tty

    def isatty(self):
        return self.tty

    def write(self, text):
        return len(text)

    def flush(self):
        pass


@pytest.mark.parametrize("stdout_tty, stderr_tty, flag, progress", [
    (True, True, [], True),
    (False, True, [], False),    # the output goes to a file or a pipe
    (True, False, [], False),    # the bars (drawn on stderr) would go to a log
    (True, True, ["--no-progress"], False),
])
def test_progress_bars_only_on_a_terminal(toy_book, monkeypatch, stdout_tty, stderr_tty, flag, progress):
    seen = []
    monkeypatch.setattr(build, "build", lambda opts: seen.append(opts.progress) or 0)
    monkeypatch.setattr(sys, "stdout", _Stream(stdout_tty))
    monkeypatch.setattr(sys, "stderr", _Stream(stderr_tty))
    assert cli.main(["build", "--root", str(toy_book), *flag]) == 0
    assert seen == [progress]
