"""The tests' one workaround for Cloud Storage emulator runs: Beam's anonymous connection, set up front.

google-cloud-storage talks to ``STORAGE_EMULATOR_HOST`` without credentials,
but Beam first looks up Google default credentials and retries that look-up
with backoff for tens of seconds before connecting anonymously. Beam has no
public way to skip it, so this records the anonymous outcome in Beam's
private ``auth._Credentials`` state (``tests/test_beam_workarounds.py``
fails loudly if an upgrade moves it). It is test configuration, never
fimflow's: ``tests/startup/sitecustomize.py`` applies it in every process
the tests start (command lines, SDK workers), as Beam's auth module is first
imported, and ``tests/conftest.py`` in the test process itself.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys

EMULATOR_ENV = "STORAGE_EMULATOR_HOST"
BEAM_AUTH = "apache_beam.internal.gcp.auth"


def connect_anonymously(auth) -> None:
    """Beam's ``auth`` module: its credentials look-up is answered 'anonymous' from now on."""
    with auth._Credentials._credentials_lock:
        auth._Credentials._credentials = None
        auth._Credentials._credentials_init = True


class _WhenBeamAuthIsImported(importlib.abc.MetaPathFinder):
    """Connects anonymously as soon as Beam's auth module is imported, so a process that never imports
    Beam (a tokenizer helper) pays nothing."""

    def find_spec(self, name, path, target=None):
        if name != BEAM_AUTH:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        execute = spec.loader.exec_module

        def exec_module(module):
            execute(module)
            connect_anonymously(module)

        spec.loader.exec_module = exec_module
        return spec


def install() -> None:
    """Where the emulator is named: connect anonymously now if Beam's auth is loaded, else when it is."""
    if not os.environ.get(EMULATOR_ENV):
        return
    if BEAM_AUTH in sys.modules:
        connect_anonymously(sys.modules[BEAM_AUTH])
    elif not any(isinstance(f, _WhenBeamAuthIsImported) for f in sys.meta_path):
        sys.meta_path.insert(0, _WhenBeamAuthIsImported())
