"""Jobs across helper processes give what they give in the calling process, each once, and fail loudly."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import pool_jobs
from tests.corpora import stdlib_sources, tokenizer_texts
from transforms.core.tokenizer_pool import PIPE_BYTES, HelperExited, TokenizerPool, release_pool, shared_pool


@pytest.fixture(scope="module")
def pool(code_tokenizer):
    pool = TokenizerPool(code_tokenizer, processes=3)
    yield pool
    pool.close()


def _run_all(pool, batches, function=pool_jobs.encoded_where):
    jobs = pool.jobs()
    results = []
    for key, batch in enumerate(batches):
        jobs.submit(key, function, batch)
        results += jobs.completed()
    return results + jobs.drain()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.lists(tokenizer_texts, max_size=4), max_size=10))
def test_every_job_comes_back_once_as_the_calling_process_runs_it(pool, code_tokenizer, batches):
    results = _run_all(pool, batches)
    assert sorted(key for key, _ in results) == list(range(len(batches)))
    for key, (ids, _) in results:
        assert ids == code_tokenizer.encode_documents(batches[key])


def test_real_code_is_encoded_in_every_process_as_in_one(pool, code_tokenizer):
    docs = stdlib_sources(600_000, seed=5)
    batches = [docs[i:i + 4] for i in range(0, len(docs), 4)]
    results = dict(_run_all(pool, batches))
    assert [results[k][0] for k in range(len(batches))] == [code_tokenizer.encode_documents(b) for b in batches]
    # Both helpers and this process took jobs: the test covers what it claims.
    assert len({pid for _, pid in results.values()}) == 3


def test_one_process_runs_each_job_when_it_is_submitted(code_tokenizer):
    pool = TokenizerPool(code_tokenizer, processes=1)
    jobs = pool.jobs()
    jobs.submit("a", pool_jobs.encoded_where, ["x = 1"])
    [(key, (ids, pid))] = jobs.completed()
    assert (key, ids, pid) == ("a", code_tokenizer.encode_documents(["x = 1"]), os.getpid())
    assert jobs.drain() == []


def _collect_until_done(jobs) -> list:
    """Results without draining, so no job is taken back from the helpers to run here."""
    while not (done := jobs.completed()):
        time.sleep(0.01)
    return done


@pytest.mark.parametrize("where", ["helper", "here"])
def test_an_error_in_a_job_is_raised_where_it_is_collected_and_the_pool_goes_on(pool, code_tokenizer, where):
    one_process = TokenizerPool(code_tokenizer, processes=1)
    jobs = (pool if where == "helper" else one_process).jobs()
    jobs.submit("bad", pool_jobs.encoded_where, ["a" * 999 + "\udfff"])  # A lone surrogate: refused.
    with pytest.raises(ValueError, match="lone surrogate"):
        _collect_until_done(jobs)
    good = [["x = 1"], ["y = 2"], ["z = 3"]]
    assert [ids for _, (ids, _) in sorted(_run_all(pool, good))] == [code_tokenizer.encode_documents(b) for b in good]


def test_a_cancelled_queue_leaves_nothing_for_the_next(pool, code_tokenizer):
    old = pool.jobs()
    for key in range(8):
        old.submit(("old", key), pool_jobs.slow_pid, 0.05)
    old.cancel()
    results = _run_all(pool, [["x = 1"], ["y = 2"]])
    assert sorted(key for key, _ in results) == [0, 1]


def test_a_helper_that_dies_fails_every_caller_with_a_clear_error(code_tokenizer):
    pool = TokenizerPool(code_tokenizer, processes=3)
    try:
        jobs = pool.jobs()
        jobs.submit(0, pool_jobs.exit_now, 9)
        with pytest.raises(HelperExited, match=r"tokenizer helper process exited with code 9; its error is on stderr"):
            _collect_until_done(jobs)
        with pytest.raises(HelperExited, match="was lost"):
            jobs.drain()
        # The lost job can never come back: later work on any queue is refused, not half-done.
        with pytest.raises(HelperExited, match="was lost"):
            pool.jobs().submit(2, pool_jobs.slow_pid, 0)
    finally:
        pool.close()


def test_a_shared_pool_is_one_pool_per_tokenizer_closed_by_its_last_user(code_tokenizer):
    first = shared_pool("code", code_tokenizer, 2)
    second = shared_pool("code", code_tokenizer, 2)
    other = shared_pool("other", code_tokenizer, 2)
    assert first is second and other is not first
    release_pool(other)
    release_pool(first)
    assert dict(_run_all(second, [["x = 1"]]))[0][0] == code_tokenizer.encode_documents(["x = 1"])
    release_pool(second)
    assert second.helpers == 0  # Closed: its helpers have exited.
    again = shared_pool("code", code_tokenizer, 2)
    assert again is not first
    release_pool(again)


def test_helpers_run_this_checkout_whatever_the_working_directory(code_tokenizer, tmp_path, monkeypatch):
    """A ``transforms`` package in the working directory must not stand in for fimflow's."""
    decoy = tmp_path / "transforms"
    decoy.mkdir()
    (decoy / "__init__.py").write_text("raise ImportError('the decoy transforms package was imported')\n")
    monkeypatch.chdir(tmp_path)
    pool = TokenizerPool(code_tokenizer, processes=2)
    try:
        jobs = pool.jobs()
        jobs.submit(0, pool_jobs.slow_pid, 0)
        assert _collect_until_done(jobs)[0][1] != os.getpid()
    finally:
        pool.close()


def test_helpers_start_without_beam():
    """What a helper imports: no Beam, so it starts in a fraction of a second."""
    code = ("import sys, transforms.core.tokenizer_pool, transforms.core.shard_content; "
            "assert not [m for m in sys.modules if m.startswith(('apache_beam', 'tensorflow'))]")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pipe sizes are Linux's")
def test_pipes_to_and_from_a_helper_hold_a_whole_batch(pool):
    """Else a helper waits for its reply to be read, 64 KiB at a time, while the runner's thread runs."""
    import fcntl

    process = pool._helpers[0]._process
    assert [fcntl.fcntl(p.fileno(), fcntl.F_GETPIPE_SZ) for p in (process.stdin, process.stdout)] == [PIPE_BYTES] * 2
