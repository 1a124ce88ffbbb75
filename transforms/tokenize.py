"""Tokenizing documents with the document encoder.

In: ``Document``. Out: ``TokenizedDocument`` (ids without ``<eot>`` and the
content hash that is the document's identity for the seeded shuffle), and
statistics: documents, tokens, literal special-token text in documents.

Documents are encoded in batches, through the tokenizer's word cache where
its vocabulary allows (``Tokenizer.encode_documents_fast``), so that
SentencePiece's batch API and threads only see words not seen before. With
``num_processes > 1`` each batch is shared among that many processes
(``transforms.core.tokenizer_pool``): for runners that run the whole pipeline
in one process. Documents longer than ``max_encode_chars`` are encoded in
pieces, bounding the memory one call needs.
"""

from __future__ import annotations

import apache_beam as beam
import numpy as np

from transforms.core.tokenizer import TokenizerHandle
from transforms.core.tokenizer_pool import TokenizerPool
from transforms.schema import (DOCUMENT_HISTOGRAM_PREFIX, SOURCE_PREFIX, TOKEN_DTYPE, Document, Stats,
                               TokenizedDocument, histogram_key, token_dtype)
from transforms.stats import StepWithStats

# Documents longer than this are encoded in pieces of this size.
MAX_ENCODE_CHARS = 1 << 20


class TokenizeBatchStep:
    """A batch of ``Document``s -> their ``TokenizedDocument``s, in order."""

    def __init__(self, tokenizer: TokenizerHandle, num_threads: int, num_processes: int, max_encode_chars: int):
        self._tokenizer_handle = tokenizer
        self._num_threads = num_threads
        self._num_processes = num_processes
        self._max_encode_chars = max_encode_chars
        self._pool = None

    def setup(self):
        self._tokenizer = self._tokenizer_handle.acquire()
        self._dtype = token_dtype(self._tokenizer.vocab_size)
        bos = self._tokenizer.special.bos
        self._bos = None if bos is None else np.array([bos], dtype=self._dtype)
        self._pool = TokenizerPool(self._tokenizer, self._num_processes)

    def teardown(self):
        # After a failed setup there is no pool to close.
        if self._pool is not None:
            self._pool.close()

    def __call__(self, batch: list[Document], stats: Stats):
        tokenizer = self._tokenizer
        # A repository's file is tokenized as its path line and content; its repository's parts get the BOS.
        texts = [d.text if d.repo is None else f"{d.path}\n{d.text}" for d in batch]
        short = [t for t in texts if len(t) <= self._max_encode_chars]
        encoded_short = iter(self._pool.encode_documents_fast(short, num_threads=self._num_threads))
        for doc, text in zip(batch, texts):
            if len(text) <= self._max_encode_chars:
                ids = next(encoded_short)
            else:
                ids = tokenizer.encode_long_document(text, self._max_encode_chars, TOKEN_DTYPE)
            ids = ids.astype(self._dtype, copy=False)
            if self._bos is not None and doc.repo is None:
                ids = np.concatenate([self._bos, ids])
            stats["documents"] += 1
            stats["document_tokens"] += len(ids)
            stats["text_chars_tokenized"] += len(doc.text)
            stats[histogram_key(DOCUMENT_HISTOGRAM_PREFIX, len(ids))] += 1
            for source in (f"pattern/{doc.pattern}", f"language/{doc.language or 'unknown'}"):
                stats[f"{SOURCE_PREFIX}{source}/documents"] += 1
                stats[f"{SOURCE_PREFIX}{source}/tokens"] += len(ids)
                stats[f"{SOURCE_PREFIX}{source}/text_chars"] += len(doc.text)
            stats["special_token_text_in_documents"] += tokenizer.count_special_text(doc.text)
            yield TokenizedDocument(doc.content_hash, ids, doc.repo, doc.path,
                                    len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass")),
                                    doc.split)


class TokenizeDocuments(beam.PTransform):
    """``PCollection[Document]`` -> ``{'documents': PCollection[TokenizedDocument], 'stats': PCollection[Stats]}``."""

    def __init__(self, tokenizer: TokenizerHandle, num_threads: int = 1, num_processes: int = 1,
                 max_batch_size: int = 64, max_encode_chars: int = MAX_ENCODE_CHARS):
        super().__init__()
        self._step = TokenizeBatchStep(tokenizer, num_threads, num_processes, max_encode_chars)
        self._max_batch_size = max_batch_size

    def expand(self, documents):
        return (documents
                | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=self._max_batch_size)
                | "Encode" >> StepWithStats("tokenize", self._step, "documents",
                                            output_type=TokenizedDocument))
