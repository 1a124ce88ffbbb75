"""The one module that relies on Beam internals, where Beam has no public way.

Each function names the private attribute it uses; ``tests/test_beam_workarounds.py``
fails loudly if an upgrade of Beam removes one, instead of letting fimflow
silently lose the guarantee it gives.

* ``connect_anonymously_to_emulator``: when ``STORAGE_EMULATOR_HOST`` is set
  (tests, local development against an emulator), google-cloud-storage talks
  to the emulator, which needs no credentials; Beam would still look up Google
  default credentials first and retry that look-up with backoff for tens of
  seconds before connecting anonymously. This records the anonymous outcome up
  front. Without the variable it does nothing, so real runs keep their
  credentials. Each worker process has its own Beam state, so the launcher and
  every DoFn that touches files call it.
* ``check_decompressed_to_the_end``: Beam's decompressing reader ends a
  truncated .gz, .bz2 or .zst quietly, as if the file ended there; only its
  decompressor knows whether the stream's end marker came.
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


def check_decompressed_to_the_end(f) -> None:
    """Raises ``EOFError`` if ``f`` (a Beam ``CompressedFile``), read to its end, stopped inside its stream."""
    decompressor = getattr(f, "_decompressor", None)
    if decompressor is not None and not decompressor.eof:
        raise EOFError("the compressed stream ends before its end marker: the file is truncated")
