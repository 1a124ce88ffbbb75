"""Every command the README's Quick start shows, run as a new user runs it: in a copy of the checkout,
in a fresh virtualenv made exactly as the README says, with nothing of this test run's environment.

A documented command that fails after the documented install, or an extra the docs forget, fails
here. The commands are read from the README itself, so the test follows the docs as they change.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.checkout import ROOT, copy_checkout

pytestmark = pytest.mark.slow

TEST_COMMAND = 'pip install -q -e ".[test]" && python -m pytest -q tests'


def section(markdown: str, title: str) -> str:
    """The text of the ``## title`` section, up to the next section of that level."""
    match = re.search(rf"^## {re.escape(title)}.*?$(.*?)(?=^## )", markdown, re.M | re.S)
    assert match, f"the README has no section {title!r}"
    return match.group(1)


def shell_blocks(text: str) -> list[str]:
    """The untagged fenced blocks: the README's shell commands (diagrams and code are tagged or indented)."""
    return re.findall(r"^```\n(.*?)^```", text, re.M | re.S)


def user_environment() -> dict[str, str]:
    """This process's environment without its virtualenv, PYTHONPATH or start-up hooks: a new shell's
    (pip's cache stays the user's, as it would be)."""
    venv_bin = str(Path(sys.prefix) / "bin")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if p != venv_bin)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def run_block(block: str, cwd: Path, env: dict[str, str], activate: Path | None = None,
              timeout: int = 900) -> subprocess.CompletedProcess:
    script = "set -euo pipefail\n" + (f". {activate}\n" if activate else "") + block
    return subprocess.run(["bash", "-c", script], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def checked(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, (result.args, result.stdout[-3000:], result.stderr[-3000:])
    return result


def own_corpus(folder: Path) -> None:
    """What the README's "your own corpus" block reads: a source tree ``src/`` and ``data/*.jsonl.gz``."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for package in ("json", "email", "http", "urllib", "logging"):
        shutil.copytree(stdlib / package, folder / "src" / package, ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "data").mkdir()
    for package in ("asyncio", "concurrent"):
        lines = "".join(json.dumps({"content": path.read_text(encoding="utf-8")}) + "\n"
                        for path in sorted((stdlib / package).rglob("*.py")))
        (folder / "data" / f"{package}.jsonl.gz").write_bytes(gzip.compress(lines.encode()))


def test_every_quick_start_command_works_after_the_install_it_shows(tmp_path):
    readme = (ROOT / "README.md").read_text()
    blocks = shell_blocks(section(readme, "Quick start"))
    install_and_run, read_back, own = (b for b in blocks if TEST_COMMAND not in b)
    checkout = copy_checkout(tmp_path / "fimflow")
    env = user_environment()

    # The base install builds the default dataset...
    checked(run_block(install_and_run, checkout, env, timeout=1200))
    assert (checkout / "fimflow_out" / "metadata.json").exists()
    activate = checkout / ".venv" / "bin" / "activate"
    # ... and the commands that need an extra name it in one line instead of a traceback.
    for command, extra in (("inspect fimflow_out", ".[tf]"), ("report fimflow_out", ".[report]")):
        result = run_block(f"fimflow {command}", checkout, env, activate)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert result.stderr.strip().count("\n") == 0 and extra in result.stderr, result.stderr

    output = checked(run_block(read_back, checkout, env, activate, timeout=1200)).stdout
    assert "=== example 1 " in output and "⟦" in output  # two examples, middles marked
    assert (checkout / "fimflow_out" / "report.html").stat().st_size > 10_000

    work = tmp_path / "work"
    own_corpus(work)
    output = checked(run_block(own, work, env, activate)).stdout
    assert (work / "my.model").exists()
    metadata = json.loads((work / "out" / "metadata.json").read_text())
    assert metadata["tokenizer"]["path"] == "my.model" and metadata["counts"]["fim_fragments"] > 0
    assert "<fim_prefix>" in output and "<fim_middle>" in output  # --raw writes the sentinels out
    report = json.loads(output[output.index("\n{") + 1:])  # the JSON report is the block's last output
    assert report["counts"]["examples"] == metadata["counts"]["examples"]

