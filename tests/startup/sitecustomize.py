"""Imported by Python at the start of every process the tests start (``tests/conftest.py`` puts this
folder on ``PYTHONPATH``): the emulator configuration of ``tests/emulator_auth.py``."""

import os
import sys

if os.environ.get("STORAGE_EMULATOR_HOST"):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    try:
        from tests import emulator_auth
    except ImportError:  # Another project's tests package, or none: nothing to configure.
        pass
    else:
        emulator_auth.install()
    finally:
        sys.path.pop(0)
