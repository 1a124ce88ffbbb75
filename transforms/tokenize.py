"""Tokenizing documents with the document encoder.

In: ``Document``. Out: ``TokenizedDocument`` (ids without ``<eot>`` and the
content hash that is the document's identity for the seeded shuffle), and
statistics: documents, tokens, literal special-token text in documents.

Documents are encoded in batches, through the tokenizer's word cache where
its vocabulary allows (``Tokenizer.encode_documents_fast``), so that
SentencePiece's batch API and threads only see words not seen before. With
``num_processes > 1`` batches are encoded in that many processes
(``transforms.core.tokenizer_pool``), while this one goes on reading: for
runners that run the whole pipeline in one process; documents then come out
in the order their batches finish. Documents longer than ``max_encode_chars``
are encoded in pieces, bounding the memory one call needs.
"""

from __future__ import annotations

import apache_beam as beam
import numpy as np

from transforms.core.tokenizer import Tokenizer, TokenizerHandle
from transforms.core.tokenizer_pool import BundleJobs
from transforms.schema import (DOCUMENT_HISTOGRAM_PREFIX, SOURCE_PREFIX, Document, Stats,
                               TokenizedDocument, histogram_key, token_dtype)
from transforms.stats import StepWithStats

# Documents longer than this are encoded in pieces of this size.
MAX_ENCODE_CHARS = 1 << 20
# Characters of text per batch (a batch holds at least one document): enough that
# handing a batch to a helper process costs little beside encoding it.
BATCH_CHARS = 1 << 19


def _text_chars(document: Document) -> int:
    return len(document.text) + 1


class TokenizeBatchStep:
    """A batch of ``Document``s -> their ``TokenizedDocument``s, in order; with helper processes, a batch's
    documents come when it is encoded, at the latest at the end of the bundle."""

    def __init__(self, tokenizer: TokenizerHandle, num_threads: int, num_processes: int, max_encode_chars: int):
        self._tokenizer_handle = tokenizer
        self._num_threads = num_threads
        self._num_processes = num_processes
        self._max_encode_chars = max_encode_chars
        self._work = BundleJobs()

    def setup(self):
        self._tokenizer = self._tokenizer_handle.acquire()
        self._dtype = token_dtype(self._tokenizer.vocab_size)
        bos = self._tokenizer.special.bos
        self._bos = None if bos is None else np.array([bos], dtype=self._dtype)
        self._work.open(self._tokenizer_handle.identity, self._tokenizer, self._num_processes)

    def teardown(self):
        self._work.close()

    def start_bundle(self):
        self._work.start_bundle()

    def __call__(self, batch: list[Document], stats: Stats):
        # A repository's file is tokenized as its path line and content; its repository's parts get the BOS.
        texts = [d.text if d.repo is None else f"{d.path}\n{d.text}" for d in batch]
        jobs = self._work.jobs
        jobs.submit((batch, texts), Tokenizer.encode_batch, texts, self._max_encode_chars, self._dtype,
                    self._num_threads)
        return self._documents(jobs.completed(), stats)

    def finish_bundle(self, stats: Stats):
        return self._documents(self._work.jobs.drain(), stats)

    def _documents(self, encoded, stats: Stats):
        tokenizer = self._tokenizer
        for (batch, texts), ids_of_batch in encoded:
            for doc, text, ids in zip(batch, texts, ids_of_batch):
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
                 batch_chars: int = BATCH_CHARS, max_encode_chars: int = MAX_ENCODE_CHARS):
        super().__init__()
        self._step = TokenizeBatchStep(tokenizer, num_threads, num_processes, max_encode_chars)
        self._batch_chars = batch_chars

    def expand(self, documents):
        return (documents
                | "Batch" >> beam.BatchElements(min_batch_size=self._batch_chars, max_batch_size=self._batch_chars,
                                                element_size_fn=_text_chars)
                | "Encode" >> StepWithStats("tokenize", self._step, "documents",
                                            output_type=TokenizedDocument))
