"""Tokenizing documents with the document encoder.

In: ``Document``. Out: ``TokenizedDocument`` (int32 ids without ``<eot>``, a
content hash that is the document's identity for the seeded shuffle, and how
many literal special-token strings the text contained).
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

import apache_beam as beam
import numpy as np

from transforms.read import Document
from transforms.tokenizer import TOKEN_DTYPE, TokenizerHandle
from transforms.tokenizer_pool import TokenizerPool

# Documents longer than this are encoded in pieces of this size.
MAX_ENCODE_CHARS = 1 << 20


class TokenizedDocument(NamedTuple):
    content_hash: bytes
    ids: np.ndarray
    special_text: int


def content_hash(text: str) -> bytes:
    # Hashed in slices so a document of hundreds of MB is never encoded whole.
    h = hashlib.blake2b(digest_size=16)
    for start in range(0, len(text), MAX_ENCODE_CHARS):
        h.update(text[start:start + MAX_ENCODE_CHARS].encode("utf-8", errors="surrogatepass"))
    return h.digest()


class _TokenizeBatchFn(beam.DoFn):
    def __init__(self, tokenizer: TokenizerHandle, num_threads: int, num_processes: int, max_encode_chars: int):
        self._tokenizer_handle = tokenizer
        self._num_threads = num_threads
        self._num_processes = num_processes
        self._max_encode_chars = max_encode_chars
        self._documents = beam.metrics.Metrics.counter("tokenize", "documents")
        self._tokens = beam.metrics.Metrics.counter("tokenize", "tokens")
        self._special = beam.metrics.Metrics.counter("tokenize", "special_token_text_in_documents")

    def setup(self):
        self._pool = None  # So that teardown after a failed setup has nothing to close.
        self._tokenizer = self._tokenizer_handle.acquire()
        self._pool = TokenizerPool(self._tokenizer, self._num_processes)

    def teardown(self):
        if self._pool is not None:
            self._pool.close()

    def process(self, batch: list[Document]):
        tokenizer = self._tokenizer
        short = [d.text for d in batch if len(d.text) <= self._max_encode_chars]
        encoded_short = iter(self._pool.encode_documents_fast(short, num_threads=self._num_threads))
        for doc in batch:
            if len(doc.text) <= self._max_encode_chars:
                ids = next(encoded_short)
            else:
                ids = tokenizer.encode_long_document(doc.text, self._max_encode_chars, TOKEN_DTYPE)
            special = tokenizer.count_special_text(doc.text)
            self._documents.inc()
            self._tokens.inc(len(ids))
            self._special.inc(special)
            yield TokenizedDocument(content_hash(doc.text), ids, special)


class TokenizeDocuments(beam.PTransform):
    """``PCollection[Document]`` -> ``PCollection[TokenizedDocument]``.

    Documents are encoded in batches, through the tokenizer's word cache
    where its vocabulary allows (``Tokenizer.encode_documents_fast``), so that
    SentencePiece's batch API and threads only see words not seen before.
    With ``num_processes > 1`` each batch is shared among that many processes
    (``transforms.tokenizer_pool``): for runners that run the whole pipeline
    in one process.
    """

    def __init__(self, tokenizer: TokenizerHandle, num_threads: int = 1, num_processes: int = 1,
                 max_batch_size: int = 64, max_encode_chars: int = MAX_ENCODE_CHARS):
        super().__init__()
        self._fn = _TokenizeBatchFn(tokenizer, num_threads, num_processes, max_encode_chars)
        self._max_batch_size = max_batch_size

    def expand(self, documents):
        return (documents
                | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=self._max_batch_size)
                | "Encode" >> beam.ParDo(self._fn))
