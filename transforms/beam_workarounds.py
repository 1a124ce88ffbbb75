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
  With ``worker_command``, its worker processes run that command (fimflow's
  ``pipeline.local_worker``): the ``FnApiRunner`` takes an environment only
  while ``direct_running_mode`` is not ``multi_processing`` (that mode puts
  Beam's own command in its place), so such a run says ``in_memory`` with
  ``--direct_num_workers=N``, and the one warning the runner logs for that
  combination is dropped.
"""

from __future__ import annotations

import logging
from typing import Optional


def check_decompressed_to_the_end(f) -> None:
    """Raises ``EOFError`` if ``f`` (a Beam ``CompressedFile``), read to its end, stopped inside its stream."""
    decompressor = getattr(f, "_decompressor", None)
    if decompressor is not None and not decompressor.eof:
        raise EOFError("the compressed stream ends before its end marker: the file is truncated")


# What the FnApiRunner logs when it runs worker processes of an environment it was given.
_IN_MEMORY_WORKERS_WARNING = "If direct_num_workers is not equal to 1, direct_running_mode should be"


class _DropInMemoryWorkersWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(_IN_MEMORY_WORKERS_WARNING)


def local_runner(options, worker_command: Optional[str] = None):
    """Beam's Python ``FnApiRunner`` for ``options``, as ``DirectRunner`` builds it, without trying Prism first.

    ``worker_command``: the shell command of each SDK worker process, for ``options`` that say
    ``--direct_running_mode=in_memory --direct_num_workers=N`` (N of them run it).
    """
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.runners.portability.portable_runner import JobServiceHandle
    from apache_beam.transforms import environments

    environment = None
    if worker_command is not None:
        environment = environments.SubprocessSDKEnvironment.from_command_string(worker_command)
        runner_logger = logging.getLogger(fn_runner.__name__)
        if not any(isinstance(f, _DropInMemoryWorkersWarning) for f in runner_logger.filters):
            runner_logger.addFilter(_DropInMemoryWorkersWarning())
    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    return fn_runner.FnApiRunner(default_environment=environment, provision_info=fn_runner.ExtendedProvisionInfo(
        beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded)))
