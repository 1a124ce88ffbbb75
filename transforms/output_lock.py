"""One writer per output: a lock file that a run creates before it writes anything.

``OUTPUT/.fimflow-run.lock`` holds the run's id, host, process and start
time. It is created exclusively: ``O_EXCL`` on a local disk, an
``if_generation_match=0`` precondition on Cloud Storage, so of two runs
started on the same output only one gets it; the other stops before touching
a file, with one line naming the run that holds it. Creating it is also the
check that the output is writable, done before the pipeline starts.
``metadata.json`` is written only while the lock is still this run's, and
the pipeline's last step releases it. A local run also releases it when it
ends, however it ends. A job that runs on after its launcher returned
(Dataflow) and fails keeps it, so that nothing else writes there before a
person looks. A lock left by a process that no longer exists on this host is
taken over; any other is the user's to remove.

Other filesystems have no exclusive create in Beam's API: there the lock is
created after checking that none exists, which narrows the race but does not
close it (a warning says so).
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import socket
import uuid
from typing import Optional

from apache_beam.io.filesystems import FileSystems

LOCK_FILE = ".fimflow-run.lock"
logger = logging.getLogger(__name__)


class OutputBusyError(RuntimeError):
    """Another run holds the output, or the output cannot be written."""


def lock_path(output: str) -> str:
    return FileSystems.join(output, LOCK_FILE)


def _create_exclusively(path: str, data: bytes) -> bool:
    """Creates ``path`` holding ``data`` unless it exists; False if it existed."""
    if path.startswith("gs://"):
        from google.api_core import exceptions
        from google.cloud import storage

        bucket, _, name = path[len("gs://"):].partition("/")
        # With STORAGE_EMULATOR_HOST set (tests), the client connects to the emulator anonymously itself.
        blob = storage.Client().bucket(bucket).blob(name)
        # The precondition closes the race on Cloud Storage; the look first is for
        # stores that ignore preconditions (the local emulator does).
        if blob.exists():
            return False
        try:
            blob.upload_from_string(data, if_generation_match=0)
        except exceptions.PreconditionFailed:
            return False
        return True
    if "://" not in path:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return True
    logger.warning("%s: this filesystem has no exclusive create; two runs started at once may both write", path)
    if FileSystems.exists(path):
        return False
    with FileSystems.create(path) as f:
        f.write(data)
    return True


def read_lock(output: str) -> Optional[dict]:
    """The lock's content, or None if there is none."""
    path = lock_path(output)
    try:
        if not FileSystems.exists(path):
            return None
        with FileSystems.open(path) as f:
            return json.loads(f.read())
    except (ValueError, OSError):  # Half-written by a killed run, or deleted meanwhile.
        return {"run_id": "unknown"}


def _is_stale(holder: dict) -> bool:
    """A lock whose process is gone from this very host."""
    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return False
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # Alive, another user's.
        return False
    return False


class OutputLock:
    """This run's claim on ``output``; ``release()`` when the run ends."""

    def __init__(self, output: str):
        self.output = output
        self.run_id = uuid.uuid4().hex
        self._started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        self._held = False

    def _record(self, **fields) -> bytes:
        return json.dumps({"run_id": self.run_id, "host": socket.gethostname(), "started": self._started,
                           **fields}).encode()

    def acquire(self) -> "OutputLock":
        data = self._record(pid=os.getpid())
        path = lock_path(self.output)
        for _ in range(2):
            try:
                created = _create_exclusively(path, data)
            except Exception as e:  # Each filesystem raises its own; all mean "not writable here".
                raise OutputBusyError(f"cannot write to {self.output}: {type(e).__name__}: {e}") from e
            if created:
                self._held = True
                return self
            holder = read_lock(self.output) or {}
            if not _is_stale(holder):
                break
            logger.warning("taking over %s from process %s, which no longer exists", path, holder.get("pid"))
            FileSystems.delete([path])
        raise OutputBusyError(
            f"{self.output} is being written by another run (id {holder.get('run_id')}, host {holder.get('host')}, "
            f"{'job ' + str(holder['job']) if holder.get('job') else 'process ' + str(holder.get('pid'))}, "
            f"started {holder.get('started')}); if that run is gone (its process ended, or its Dataflow job "
            f"failed or was cancelled), delete {path}")

    def hand_over(self, job: str) -> None:
        """The lock is now ``job``'s, whose last step releases it: it names the job instead of this
        process, so that this process ending does not make it stale, and ``release()`` no longer
        deletes it."""
        with FileSystems.create(lock_path(self.output)) as f:
            f.write(self._record(job=job))
        self._held = False

    def release(self) -> None:
        if self._held:
            self._held = False
            release_lock(self.output, self.run_id)


def release_lock(output: str, run_id: str) -> None:
    """Deletes ``output``'s lock if ``run_id`` holds it; a lock of another run is left alone."""
    holder = read_lock(output)
    if holder and holder.get("run_id") == run_id:
        try:
            FileSystems.delete([lock_path(output)])
        except Exception:  # Released meanwhile by the run's other end (launcher or last step).
            if read_lock(output) is not None:
                raise


def check_lock_holder(output: str, run_id: Optional[str]) -> None:
    """Raises ``OutputBusyError`` unless ``run_id`` (if given) still holds ``output``."""
    if run_id is None:
        return
    holder = read_lock(output)
    if not holder or holder.get("run_id") != run_id:
        raise OutputBusyError(f"{output}: this run no longer holds {LOCK_FILE} (now: {holder}); another run "
                              "may have written here, so metadata.json is not written")
