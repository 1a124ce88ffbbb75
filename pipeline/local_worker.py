"""The SDK worker process of a local run with worker processes: Beam's own worker, then an exit at once.

``command()`` starts ``main``, which runs ``apache_beam.runners.worker.sdk_worker_main``
exactly as Beam's multi-processing runner would, with the environment the
runner gives it. What differs is the end: once the harness has finished its
last bundle and closed its log channel, the process exits at once
(``os._exit``) instead of tearing down its interpreter. Beam's runner stops
its workers one after the other, waiting for each process to end, and each
teardown (Beam, pandas, gRPC, a model and its word caches) took about 0.36 s
on 2 cores (a 31.5 MB run's log, docs/throughput.md): most of a local run's last second. A
harness that fails raises as Beam's own worker does, with its exit code.
"""

from __future__ import annotations

import logging
import os
import shlex
import sys


# The worker's program: the import path comes as its arguments.
_WORKER_MAIN = ("import sys; sys.path[:0] = sys.argv[1:]; del sys.argv[1:]; "
                f"from {__name__} import main; main()")


def command() -> str:
    """The shell command that starts one such worker with this Python and this process's import path.

    The path goes first, as for the tokenizer helpers (``transforms.core.tokenizer_pool``): with
    ``-m`` the working directory would come first, and any ``pipeline`` or ``transforms`` folder there.
    """
    paths = [p or os.getcwd() for p in sys.path]
    return shlex.join([sys.executable, "-c", _WORKER_MAIN, *paths])


def main() -> None:
    from apache_beam.runners.worker import sdk_worker_main

    sdk_worker_main.main(sys.argv)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
