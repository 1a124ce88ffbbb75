"""Packing shuffled documents into fixed-length chunks.

In: ``(bucket, documents)`` in shuffled order. Out: ``Chunk`` elements of
exactly ``context_length`` ids (the bucket's last chunk may be shorter; the
FIM stage pads it) and per-bucket statistics.

Each document is followed by ``<eot>``; the stream is cut every
``context_length`` ids regardless of document boundaries. Only the pending
ids of one chunk are held beyond the bucket itself.
"""

from __future__ import annotations

from collections import Counter
from typing import NamedTuple

import apache_beam as beam
import numpy as np

from transforms.tokenize import TOKEN_DTYPE

STATS_TAG = "stats"


class Chunk(NamedTuple):
    """``ids`` (at most ``context_length`` ids) cut at ``index`` from shuffle ``bucket``."""

    bucket: int
    index: int
    ids: np.ndarray


def pack_bucket(bucket: int, documents, context_length: int, eot: int):
    """Yields the chunks of one bucket, then its statistics ``Counter``."""
    eot_array = np.array([eot], dtype=TOKEN_DTYPE)
    pending: list[np.ndarray] = []
    pending_len = 0
    index = 0
    stats: Counter = Counter()
    for doc in documents:
        stats["documents"] += 1
        stats["document_tokens"] += len(doc.ids)
        stats["special_token_text_in_documents"] += doc.special_text
        pending += [doc.ids, eot_array]
        pending_len += len(doc.ids) + 1
        if pending_len >= context_length:
            stream = np.concatenate(pending)
            full = len(stream) - len(stream) % context_length
            for start in range(0, full, context_length):
                yield Chunk(bucket, index, stream[start:start + context_length])
                index += 1
            pending = [stream[full:]]
            pending_len = len(stream) - full
    if pending_len:
        yield Chunk(bucket, index, np.concatenate(pending))
        index += 1
    stats["chunks"] += index
    yield stats


class _PackFn(beam.DoFn):
    def __init__(self, context_length: int, eot: int):
        self._context_length = context_length
        self._eot = eot
        self._chunks = beam.metrics.Metrics.counter("pack", "chunks")

    def process(self, bucket_and_documents):
        bucket, documents = bucket_and_documents
        for item in pack_bucket(bucket, documents, self._context_length, self._eot):
            if isinstance(item, Chunk):
                self._chunks.inc()
                yield item
            else:
                yield beam.pvalue.TaggedOutput(STATS_TAG, item)


class PackChunks(beam.PTransform):
    """``PCollection[(bucket, documents)]`` -> ``{'chunks': PCollection[Chunk], 'stats': PCollection[Counter]}``."""

    def __init__(self, context_length: int, eot: int):
        super().__init__()
        self._fn = _PackFn(context_length, eot)

    def expand(self, buckets):
        results = buckets | beam.ParDo(self._fn).with_outputs(STATS_TAG, main="chunks")
        return {"chunks": results.chunks, "stats": results[STATS_TAG]}
