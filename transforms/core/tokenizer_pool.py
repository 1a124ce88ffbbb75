"""Jobs on a tokenizer run in several processes, for a pipeline that runs in one.

The in-process DirectRunner runs every DoFn in one Python thread, and the
word cache, FIM and serializing are Python holding the GIL: one core, however
many the machine has. A ``TokenizerPool`` keeps ``processes - 1`` helper
processes, each with its own copy of the tokenizer (and its own word cache),
and runs *jobs* there: a job is ``function(tokenizer, *args)``, ``function``
a picklable callable of a Beam-free module. Tokenizing a batch
(``transforms.tokenize``) and making a bucket's records
(``transforms.shards``) are jobs. Every job is exact in every process, so no
result depends on which process ran it.

Jobs are pipelined: a caller submits a job and goes on (reading, the runner's
own work) while a helper runs it, and collects results as they come
(``Jobs.completed``) and at the end of its bundle (``Jobs.drain``). Helpers
take jobs in order; once every helper has a job waiting, the caller runs the
newest one itself, which keeps all processes busy and bounds what is held.
Results come in the order jobs finish, which is why callers must not depend
on order (every stage after tokenizing sorts by content, see
``transforms.shuffle``).

A helper is a Python process running ``_serve`` of this module, talking
pickles over its stdin and stdout, one job at a time; a thread of the calling
process feeds each helper. Not ``multiprocessing``: its ``fork`` can deadlock a
child of a process running Beam's threads, and its ``spawn`` re-imports the
caller's main script in the child, which for a script without a ``__main__``
guard means running the pipeline again. A helper imports this module and the
job's module, which do not import Beam, so it starts in a fraction of a
second; it exits when its stdin closes, also when the calling process dies.
Runners with a worker process per core (Dataflow, the multi-processing
DirectRunner) need no helpers: with ``processes=1`` every job runs in the
calling process, when it is submitted.

Stages that run in one process share one pool (``shared_pool``): the
helpers' word caches, warm from tokenizing, serve FIM's re-encoding too.
"""

from __future__ import annotations

import collections
import os
import pickle
import signal
import subprocess
import sys
import threading
from typing import Any, Callable, Hashable, Optional

from transforms.core.tokenizer import Tokenizer


# Jobs sent to a helper before it has replied to the first: one running, one read and waiting.
JOBS_PER_HELPER = 2
# What a pipe to or from a helper holds (Linux's limit for a user, unless raised).
PIPE_BYTES = 1 << 20

# A helper's program: the import path comes as its arguments.
_HELPER_MAIN = ("import sys; sys.path[:0] = sys.argv[1:]; del sys.argv[1:]; "
                f"from {__name__} import _serve; _serve()")


class HelperExited(RuntimeError):
    """A helper process is gone; the pool that owns it runs no more jobs."""


class _Helper:
    """One helper process: requests and replies are pickles, answered in order."""

    def __init__(self, tokenizer: Tokenizer):
        # This process's import path goes first, so the helper runs this very
        # module, also from a source checkout; with ``-m`` the working
        # directory would come first, and any ``transforms`` package there.
        paths = [p or os.getcwd() for p in sys.path]
        self._process = subprocess.Popen([sys.executable, "-c", _HELPER_MAIN, *paths],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        for pipe in (self._process.stdin, self._process.stdout):
            _widen(pipe)
        self.send(tokenizer)

    def send(self, message) -> None:
        try:
            pickle.dump(message, self._process.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            self._process.stdin.flush()
        except (BrokenPipeError, ValueError):  # ValueError: closed meanwhile.
            raise self._exited() from None

    def receive(self) -> tuple[bool, Any]:
        """``(True, result)``, or ``(False, exception)`` for an error in the job, of the oldest request."""
        try:
            return pickle.load(self._process.stdout)
        except (EOFError, ValueError):
            raise self._exited() from None

    def _exited(self) -> HelperExited:
        return HelperExited(f"tokenizer helper process exited with code {self._process.wait()}; "
                            "its error is on stderr")

    def close(self) -> None:
        try:
            self._process.stdin.close()
        except BrokenPipeError:  # It has exited already.
            pass
        self._process.wait()


def _widen(pipe) -> None:
    """Lets ``pipe`` hold a whole request or reply (Linux), so neither side waits for the other to read it:
    this process's reading thread waits for Python's lock between reads, while the main thread runs."""
    try:
        import fcntl

        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except (ImportError, AttributeError, OSError):  # Not Linux, or above the system's limit: only slower.
        pass


class _Job:
    """A submitted job and the ``Jobs`` its result goes to (compared by identity: its arguments may be arrays)."""

    __slots__ = ("jobs", "key", "function", "args")

    def __init__(self, jobs: "Jobs", key: Any, function: Callable, args: tuple):
        self.jobs, self.key, self.function, self.args = jobs, key, function, args


class TokenizerPool:
    """``processes - 1`` helper processes holding copies of ``tokenizer``, and the jobs waiting for them."""

    def __init__(self, tokenizer: Tokenizer, processes: int):
        self.tokenizer = tokenizer
        self._lock = threading.Condition()
        self._waiting: collections.deque[_Job] = collections.deque()
        self._failure: Optional[HelperExited] = None
        self._closed = False
        self._helpers = [_Helper(tokenizer) for _ in range(processes - 1)]
        self._threads = []
        for i, helper in enumerate(self._helpers):
            running: collections.deque[_Job] = collections.deque()
            for role in (self._send_to, self._receive_from):
                self._threads.append(threading.Thread(target=role, args=(helper, running), daemon=True,
                                                      name=f"fimflow-helper-{i}-{role.__name__.strip('_')}"))
        for thread in self._threads:
            thread.start()

    @property
    def helpers(self) -> int:
        return len(self._helpers)

    def jobs(self) -> "Jobs":
        """A new queue of jobs and results: one per caller and bundle."""
        return Jobs(self)

    def _send_to(self, helper: _Helper, running: collections.deque) -> None:
        """Sends jobs to ``helper`` while it holds fewer than ``JOBS_PER_HELPER``: it starts the next one as soon
        as it has replied to the last, whenever this process gets to read the reply."""
        while True:
            with self._lock:
                while not self._closed and self._failure is None and not (
                        self._waiting and len(running) < JOBS_PER_HELPER):
                    self._lock.wait()
                if self._closed or self._failure is not None:
                    return
                job = self._waiting.popleft()
                job.jobs._running += 1
                running.append(job)
            try:
                helper.send((job.function, job.args))
            except HelperExited as e:
                self._fail(e)
                return

    def _receive_from(self, helper: _Helper, running: collections.deque) -> None:
        while True:
            try:
                outcome = helper.receive()
            except HelperExited as e:
                self._fail(e)
                return
            with self._lock:
                job = running.popleft()
                job.jobs._finish(job.key, outcome)
                self._lock.notify_all()

    def _fail(self, error: HelperExited) -> None:
        with self._lock:
            # The jobs it held are lost: every caller must hear of it, not wait for them.
            if not self._closed and self._failure is None:
                self._failure = error
            self._lock.notify_all()

    def _run_here(self, job: _Job) -> None:
        """Runs ``job`` in this thread; called without the lock, with the job already taken off the queue."""
        try:
            outcome = (True, job.function(self.tokenizer, *job.args))
        except Exception as e:  # Raised when its caller collects it, as a helper's would be.
            outcome = (False, e)
        except BaseException as e:  # An interrupt: nobody may wait for this job.
            outcome = (False, e)
            raise
        finally:
            with self._lock:
                job.jobs._finish(job.key, outcome)
                self._lock.notify_all()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._waiting.clear()
            self._lock.notify_all()
        for helper in self._helpers:
            helper.close()
        for thread in self._threads:
            thread.join()
        self._helpers, self._threads = [], []


class Jobs:
    """One caller's jobs on a ``TokenizerPool`` and their results, as ``(key, result)`` pairs.

    A job's exception is raised when its result would be collected; a lost
    helper raises ``HelperExited`` on the next call, on every caller's queue.
    """

    def __init__(self, pool: TokenizerPool):
        self._pool = pool
        self._done: collections.deque[tuple[Any, tuple[bool, Any]]] = collections.deque()
        self._running = 0

    def _finish(self, key, outcome) -> None:  # Under the pool's lock.
        self._running -= 1
        self._done.append((key, outcome))

    def submit(self, key: Any, function: Callable, *args) -> None:
        """Queues ``function(tokenizer, *args)``; its result comes back under ``key``."""
        pool = self._pool
        job = _Job(self, key, function, args)
        with pool._lock:
            self._check()
            if not pool.helpers:
                # Runners with a worker per core: each DoFn thread runs its own jobs.
                self._running += 1
            else:
                pool._waiting.append(job)
                pool._lock.notify()
        if not pool.helpers:
            pool._run_here(job)
            return
        # One job waiting per helper keeps them busy; the caller runs any more itself, newest first.
        while True:
            with pool._lock:
                if len(pool._waiting) <= pool.helpers:
                    return
                job = pool._waiting.pop()
                job.jobs._running += 1
            pool._run_here(job)

    def completed(self) -> list[tuple[Any, Any]]:
        """The results finished so far, without waiting."""
        with self._pool._lock:
            self._check()
            done = list(self._done)
            self._done.clear()
        return [self._result(key, outcome) for key, outcome in done]

    def drain(self) -> list[tuple[Any, Any]]:
        """Every result not collected yet: runs this queue's waiting jobs here too, then waits for the rest."""
        pool = self._pool
        while True:
            with pool._lock:
                self._check()
                index = next((i for i in range(len(pool._waiting) - 1, -1, -1)
                              if pool._waiting[i].jobs is self), None)
                if index is None:
                    break
                job = pool._waiting[index]
                del pool._waiting[index]
                self._running += 1
            pool._run_here(job)
        with pool._lock:
            while self._running and pool._failure is None:
                pool._lock.wait()
        return self.completed()

    def cancel(self) -> None:
        """Drops this queue's waiting jobs (a failed bundle's); results of those running are ignored."""
        with self._pool._lock:
            self._pool._waiting = collections.deque(job for job in self._pool._waiting if job.jobs is not self)

    def _check(self) -> None:  # Under the pool's lock.
        if self._pool._failure is not None:
            raise HelperExited(f"a tokenizer helper process was lost: {self._pool._failure}")

    @staticmethod
    def _result(key, outcome):
        ok, value = outcome
        if not ok:
            raise value
        return key, value


_SHARED: dict[tuple[Hashable, int], tuple[TokenizerPool, int]] = {}
_SHARED_LOCK = threading.Lock()


def shared_pool(key: Hashable, tokenizer: Tokenizer, processes: int) -> TokenizerPool:
    """This process's pool for ``key`` (a tokenizer's identity), started by the first caller; each caller
    gives it back with ``release_pool``, and the last one closes it."""
    with _SHARED_LOCK:
        pool, users = _SHARED.get((key, processes), (None, 0))
        if pool is None or pool._failure is not None:
            pool, users = TokenizerPool(tokenizer, processes), 0
        _SHARED[(key, processes)] = (pool, users + 1)
        return pool


def release_pool(pool: TokenizerPool) -> None:
    with _SHARED_LOCK:
        for shared_key, (shared, users) in list(_SHARED.items()):
            if shared is pool:
                if users > 1:
                    _SHARED[shared_key] = (pool, users - 1)
                    return
                del _SHARED[shared_key]
    pool.close()


class BundleJobs:
    """A step's share of its process's pool (``shared_pool``): ``open`` it in the step's ``setup``, call
    ``start_bundle`` for each bundle (a failed bundle's waiting jobs are dropped) and submit to ``jobs``,
    ``close`` it in ``teardown``."""

    def __init__(self):
        self.pool: Optional[TokenizerPool] = None
        self.jobs: Optional[Jobs] = None

    def open(self, key: Hashable, tokenizer: Tokenizer, processes: int) -> None:
        self.pool = shared_pool(key, tokenizer, processes)

    def start_bundle(self) -> None:
        if self.jobs is not None:
            self.jobs.cancel()
        self.jobs = self.pool.jobs()

    def close(self) -> None:
        # After a failed setup there is no pool to give back.
        if self.pool is not None:
            release_pool(self.pool)
            self.pool = None


def _serve() -> None:
    # Ctrl-C reaches the whole process group; the calling process decides,
    # and its exit closes this helper's stdin.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    requests = sys.stdin.buffer
    # Replies get fd 1 to themselves; anything else that writes there goes to stderr.
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    tokenizer = pickle.load(requests)
    while True:
        try:
            function, args = pickle.load(requests)
        except EOFError:
            return
        try:
            reply = (True, function(tokenizer, *args))
        except Exception as e:  # Raised again in the calling process, as if it had run the job.
            reply = (False, e)
        pickle.dump(reply, replies, protocol=pickle.HIGHEST_PROTOCOL)
        replies.flush()
