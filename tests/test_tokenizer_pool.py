"""Encoding across helper processes gives SentencePiece's ids, and fails loudly."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.corpora import stdlib_sources
from tests.corpora import as_lists, tokenizer_texts
from transforms.core.tokenizer_pool import TokenizerPool, split_by_size


@pytest.fixture(scope="module")
def pool(code_tokenizer):
    pool = TokenizerPool(code_tokenizer, processes=3)
    yield pool
    pool.close()


@settings(max_examples=300, deadline=None)
@given(batch=st.lists(st.text(max_size=5), max_size=12), parts=st.integers(1, 4))
def test_split_by_size_keeps_every_text_in_order(batch, parts):
    runs = split_by_size(batch, parts)
    assert len(runs) == parts and [t for run in runs for t in run] == batch


def test_split_by_size_balances_the_text():
    runs = split_by_size(["x" * 10] * 10, 2)
    assert [len(r) for r in runs] == [5, 5]
    assert [len(r) for r in split_by_size(["x" * 100, "y", "z"], 2)] == [1, 2]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(tokenizer_texts, max_size=8))
def test_pool_encodes_as_sentencepiece(pool, code_tokenizer, batch):
    assert as_lists(pool.encode_documents_fast(batch)) == code_tokenizer.encode_documents(batch)


def test_pool_encodes_real_code_as_sentencepiece(pool, code_tokenizer):
    docs = stdlib_sources(300_000, seed=5)
    assert as_lists(pool.encode_documents_fast(docs, num_threads=2)) == code_tokenizer.encode_documents(docs)


@pytest.mark.parametrize("bad", [1, 2], ids=["first helper", "last helper"])
def test_an_error_in_a_helper_is_raised_in_the_caller_and_the_pool_goes_on(pool, code_tokenizer, bad):
    batch = ["a" * 1000, "b" * 1000, "c" * 1000]
    batch[bad] = batch[bad][:-1] + "\udfff"  # A lone surrogate, which the word cache refuses.
    with pytest.raises(ValueError, match="lone surrogate"):
        pool.encode_documents_fast(batch)
    # No reply of the failed batch is left behind to be taken for this one's.
    good = ["x = 1", "y = 2", "z = 3"]
    assert as_lists(pool.encode_documents_fast(good)) == code_tokenizer.encode_documents(good)


def test_an_error_in_the_calling_process_leaves_no_reply_behind(pool, code_tokenizer):
    with pytest.raises(ValueError, match="lone surrogate"):
        pool.encode_documents_fast(["a" * 999 + "\udfff", "b" * 1000, "c" * 1000])
    good = ["x = 1", "y = 2", "z = 3"]
    assert as_lists(pool.encode_documents_fast(good)) == code_tokenizer.encode_documents(good)


def test_a_helper_that_dies_fails_the_batch_with_a_clear_error(code_tokenizer):
    pool = TokenizerPool(code_tokenizer, processes=3)
    pool._helpers[0]._process.kill()
    with pytest.raises(RuntimeError, match=r"tokenizer helper process exited with code -9; its error is on stderr"):
        pool.encode_documents_fast(["a" * 100, "b" * 100, "c" * 100])
    # The second helper may still hold the reply for "c...". This batch leaves the
    # dead helper nothing to do and gives the second one "y": the pool must refuse it.
    assert [len(share) for share in split_by_size(["x = 1", "y"], 3)] == [1, 0, 1]
    with pytest.raises(RuntimeError, match="exited with code -9"):
        pool.encode_documents_fast(["x = 1", "y"])
    pool.close()


def test_helpers_run_this_checkout_whatever_the_working_directory(code_tokenizer, tmp_path, monkeypatch):
    """A ``transforms`` package in the working directory must not stand in for fimflow's."""
    decoy = tmp_path / "transforms"
    decoy.mkdir()
    (decoy / "__init__.py").write_text("raise ImportError('the decoy transforms package was imported')\n")
    monkeypatch.chdir(tmp_path)
    pool = TokenizerPool(code_tokenizer, processes=2)
    try:
        docs = ["x = 1\n", "y = 2\n", "def f(z):\n"]
        assert [len(share) for share in split_by_size(docs, 2)] == [2, 1]  # The helper gets work.
        assert as_lists(pool.encode_documents_fast(docs)) == code_tokenizer.encode_documents(docs)
    finally:
        pool.close()


def test_helpers_start_without_beam():
    """What a helper imports: no Beam, so it starts in a fraction of a second."""
    code = ("import sys, transforms.core.tokenizer_pool; "
            "assert not [m for m in sys.modules if m.startswith(('apache_beam', 'tensorflow'))]")
    subprocess.run([sys.executable, "-c", code], check=True)
