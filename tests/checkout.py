"""A clean copy of this checkout, as a fresh clone would have it, for tests that install it."""

from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# What a clone does not hold: hidden folders (.git, .venv), build outputs and caches.
NOT_IN_A_CLONE = (".*", "build", "*.egg-info", "__pycache__")


def copy_checkout(destination: Path, *, leave_out: tuple[str, ...] = ()) -> Path:
    """Copies the checkout to ``destination`` without what a clone lacks, nor the ``leave_out`` patterns."""
    shutil.copytree(ROOT, destination, ignore=shutil.ignore_patterns(*NOT_IN_A_CLONE, *leave_out))
    return destination


def run_cli_without(modules: tuple[str, ...], argv: list[str]) -> "subprocess.CompletedProcess":
    """``fimflow ARGV`` in a fresh process where ``modules`` can be neither found nor imported, as in an
    install without the extras that bring them."""
    import subprocess
    import sys

    hidden = "".join(f"sys.modules[{module!r}] = None\n" for module in modules)
    script = f"import sys\n{hidden}from pipeline.cli import main\nsys.exit(main({argv!r}))"
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
