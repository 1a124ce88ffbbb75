"""Ending a local run cleanly on SIGTERM or Ctrl-C, with no worker left behind.

The multi-processing DirectRunner starts SDK worker processes (through
``sh -c``) that outlive a launcher ended by a signal, for minutes, holding
their memory and the launcher's stderr. An interrupted or terminated run ends
them. They are found as this process's descendants in ``/proc`` (Linux);
killing the process group instead could reach the shell script that started
fimflow. A launcher killed with SIGKILL cannot do this: its workers exit when
they notice the runner gone.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Callable

logger = logging.getLogger(__name__)


def descendants(root: int) -> list[int]:
    """Process ids of every descendant of ``root``, from Linux's /proc (empty elsewhere)."""
    children: dict = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    for name in names:
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    parent = int(f.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):  # It exited meanwhile.
                continue
            children.setdefault(parent, []).append(int(name))
    found, pending = [], [root]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


def end_descendants() -> None:
    """Sends SIGTERM to every descendant of this process."""
    for pid in descendants(os.getpid()):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


def exit_now(cleanup: Callable[[], None], message: str, code: int):
    """Ends the descendants, runs ``cleanup``, logs ``message`` and exits with ``code``, at once.

    At once (``os._exit``): the multi-processing runner's threads wait on
    the worker processes just ended, and a normal interpreter exit would
    join them forever. Those threads fail as their workers end; their
    tracebacks would only bury the one line, so they are not printed.
    """
    threading.excepthook = lambda args: None
    end_descendants()
    try:
        cleanup()
    finally:
        logger.error(message)
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


@contextmanager
def ended_cleanly(cleanup: Callable[[], None], terminated: str, interrupted: str):
    """Within the block, SIGTERM ends the run with ``exit_now(cleanup, terminated, 143)`` and SIGINT
    (Ctrl-C) with ``exit_now(cleanup, interrupted, 130)``.

    Neither raises: an exception from a signal handler lands wherever the
    main thread is, inside Beam's runner too, which may swallow it, wait on
    the workers in a ``finally`` or stop holding a lock, and the run would
    hang. A SIGINT that is ignored (a shell's background job) stays ignored.
    """
    handlers = {signal.SIGTERM: lambda signum, frame: exit_now(cleanup, terminated, 143)}
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        handlers[signal.SIGINT] = lambda signum, frame: exit_now(cleanup, interrupted, 130)
    previous = {number: signal.signal(number, handler) for number, handler in handlers.items()}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
