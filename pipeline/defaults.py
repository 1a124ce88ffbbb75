"""What ``fimflow run`` uses when told nothing: a corpus and tokenizer every machine has."""

from __future__ import annotations

import sysconfig

from transforms.schema import InputSelection

DEFAULT_OUTPUT = "fimflow_out"
NOT_STDLIB = ("site-packages", "dist-packages", "__pycache__")
# Inside the installed package: the launcher and every worker resolve it in their own copy.
BUNDLED_TOKENIZER = "package://pipeline/assets/fimflow-code-16k.model"


def bundled_tokenizer_path() -> str:
    return BUNDLED_TOKENIZER


def default_corpus() -> InputSelection:
    """The running Python's standard-library ``.py`` sources.

    Installed third-party packages (``site-packages``) are left out so the
    corpus is the same on every machine with the same Python.
    """
    stdlib = sysconfig.get_paths()["stdlib"]
    return InputSelection((stdlib,), ("*.py",), tuple(f"{stdlib}*/{name}/*" for name in NOT_STDLIB))
