"""Cloud Storage access when a local emulator stands in for it.

When ``STORAGE_EMULATOR_HOST`` is set (tests, local development against an
emulator), google-cloud-storage talks to the emulator, which needs no
credentials. Beam would still look up Google default credentials first and
retry that look-up with backoff for tens of seconds before connecting
anonymously; ``connect_anonymously_to_emulator`` records the anonymous
outcome up front. Without the variable it does nothing, so real runs keep
their credentials. Called by the launcher and by every DoFn that touches
files, since each worker process has its own Beam state.
"""

from __future__ import annotations

import os

EMULATOR_ENV = "STORAGE_EMULATOR_HOST"


def connect_anonymously_to_emulator() -> None:
    if not os.environ.get(EMULATOR_ENV):
        return
    from apache_beam.internal.gcp import auth

    with auth._Credentials._credentials_lock:
        auth._Credentials._credentials = None
        auth._Credentials._credentials_init = True
