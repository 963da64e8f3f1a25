"""The README is what a rebuilder reads first: its commands and parameter list must be true."""
import re

from rnnbook.book import build

from conftest import ROOT

README = (ROOT / "README.md").read_text()


def _section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, flags=re.M | re.S)
    assert match, f"README has no '## {title}' section"
    return match.group(1)


def test_quick_start_is_two_commands_and_ci_runs_the_test_command():
    blocks = re.findall(r"```bash\n(.*?)```", _section("Quick start"), flags=re.S)
    commands = [line for block in blocks for line in block.splitlines() if line.strip()]
    assert len(commands) == 2, commands
    build_cmd, test_cmd = commands
    assert "rnnbook build" in build_cmd and "pip install" in build_cmd
    assert "pytest" in test_cmd and "pip install" in test_cmd
    assert build_cmd.startswith("pip install -r requirements.txt && pip install -e . && ")
    assert test_cmd.startswith("pip install -r requirements-all.txt && pip install -e . && ")
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_cmd.strip() in ci.splitlines(), f"{test_cmd!r} (the README's test command) is not what .ci/run runs"


def test_install_section_documents_the_locks_and_how_to_regenerate_them():
    text = _section("Installing")
    for lock in ("requirements.txt", "requirements-all.txt"):
        header = (ROOT / lock).read_text().splitlines()[:3]
        command = next(line.lstrip("# ").strip() for line in header if "uv pip compile" in line)
        assert command in text, f"the README does not give {lock}'s regeneration command {command!r}"
    for words in ("[ray]", "[test]", "tensorflow-cpu", "rnnbook --version", "LICENSE"):
        assert words in text


def test_every_parameter_is_in_the_readme_list():
    listed = set(re.findall(r"^\| `([a-z_0-9]+)`", _section("Rebuilding with other parameters"), flags=re.M))
    listed |= {n for row in re.findall(r"^\| (`[^|]+`) \|", README, flags=re.M)
               for n in re.findall(r"`([a-z_0-9]+)`", row)}
    declared = {name for chapter in build.find_chapters(ROOT) for name in chapter.defaults}
    assert declared - listed == set(), f"parameters missing from README: {sorted(declared - listed)}"


def test_benchmark_is_documented():
    assert "python -m rnnbook.bench" in README
