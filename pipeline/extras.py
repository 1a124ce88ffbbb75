"""The optional installs (``setup.py``'s extras) and the one-line error when a command lacks one.

``pip install -e .`` installs what building a dataset needs, which is what
Dataflow workers install too. Reading records back needs TensorFlow (the
``tf`` extra) and the report also matplotlib (``report``); writing
ArrayRecord files needs ``array_record`` (``--output_format array_record``,
which Dataflow's worker image installs). A command that
needs an extra checks for it first, so a user sees which one to install
instead of a traceback.
"""

from __future__ import annotations

import importlib.util

from pipeline.flags import UsageError

# Each extra's modules, as setup.py's extras_require installs them (tests/test_readme_commands.py
# installs them the README's way and runs the commands).
EXTRA_MODULES = {"tf": ("tensorflow",), "report": ("tensorflow", "matplotlib"), "array_record": ("array_record",)}


class MissingExtra(UsageError):
    """A command needs a package that the base install leaves out."""


def require_extra(extra: str) -> None:
    """Raises ``MissingExtra`` naming the install line when a module of ``extra`` is not installed."""
    missing = [module for module in EXTRA_MODULES[extra] if importlib.util.find_spec(module) is None]
    if missing:
        raise MissingExtra(f"needs {' and '.join(missing)}, which the base install leaves out: "
                           f"pip install -e \".[{extra}]\" in a fimflow checkout, "
                           f"pip install \"fimflow[{extra}]\" elsewhere")
