"""What ``fimflow run`` uses when told nothing: a corpus and tokenizer every machine has."""

from __future__ import annotations

import os
import sysconfig
from pathlib import Path

from transforms.schema import InputFile

DEFAULT_OUTPUT = "fimflow_out"
BUNDLED_TOKENIZER = Path(__file__).parent / "assets" / "fimflow-code-16k.model"


def bundled_tokenizer_path() -> str:
    return str(BUNDLED_TOKENIZER)


def default_corpus_files() -> list:
    """The running Python's standard-library ``.py`` sources, as ``InputFile``s.

    Installed third-party packages (``site-packages``) are left out so the
    corpus is the same on every machine with the same Python.
    """
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = []
    for root, dirs, names in os.walk(stdlib):
        dirs[:] = sorted(d for d in dirs if d not in ("site-packages", "dist-packages", "__pycache__"))
        for name in sorted(names):
            if name.endswith(".py"):
                path = os.path.join(root, name)
                info = os.stat(path)
                files.append(InputFile(path, info.st_size, info.st_mtime))
    return files
