"""The one module that relies on Beam internals, where Beam has no public way.

Each function names the private attribute it uses; ``tests/test_beam_workarounds.py``
fails loudly if an upgrade of Beam removes one, instead of letting fimflow
silently lose the guarantee it gives. (The tests' own workaround, for runs
against the Cloud Storage emulator, is test configuration:
``tests/emulator_auth.py``.)

* ``check_decompressed_to_the_end``: Beam's decompressing reader ends a
  truncated .gz, .bz2 or .zst quietly, as if the file ended there; only its
  decompressor knows whether the stream's end marker came.
* ``local_runner``: Beam 2.77's ``DirectRunner`` first tries the Prism runner
  (downloading its binary where the internet is reachable) and falls back to
  the Python ``FnApiRunner``. fimflow runs locally on the ``FnApiRunner``,
  set up as the ``DirectRunner`` sets it up (the pipeline options travel to
  multi-processing workers), so a laptop with internet runs what the tests run.
"""

from __future__ import annotations

def check_decompressed_to_the_end(f) -> None:
    """Raises ``EOFError`` if ``f`` (a Beam ``CompressedFile``), read to its end, stopped inside its stream."""
    decompressor = getattr(f, "_decompressor", None)
    if decompressor is not None and not decompressor.eof:
        raise EOFError("the compressed stream ends before its end marker: the file is truncated")


def local_runner(options):
    """Beam's Python ``FnApiRunner`` for ``options``, as ``DirectRunner`` builds it, without trying Prism first."""
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.runners.portability.portable_runner import JobServiceHandle

    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    return fn_runner.FnApiRunner(provision_info=fn_runner.ExtendedProvisionInfo(
        beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded)))
