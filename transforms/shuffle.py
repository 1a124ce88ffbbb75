"""Seeded global shuffle of tokenized documents.

In: ``TokenizedDocument``. Out: ``(bucket, documents)`` with the documents of
each bucket in their shuffled order.

Each document's position in the shuffled corpus is a keyed hash of the seed
and its content (``transforms.core.hashing.shuffle_key``), so the order
depends only on the data and the seed, not on the runner, the worker count or
retries. The hash also assigns the document to one of ``num_buckets``
buckets; the concatenation of buckets in bucket order is one random
permutation of the corpus, and each bucket is small enough to sort in one
worker's memory.
"""

from __future__ import annotations

from typing import Iterable

import apache_beam as beam

from transforms.core.hashing import shuffle_key
from transforms.schema import TokenizedDocument


def keyed_by_bucket(doc, seed, num_buckets):
    """``(bucket, (shuffle key, doc))``: which bucket a ``TokenizedDocument`` goes to, and its place there.

    Not annotated: Beam reads annotations as type hints, and would code the
    64-bit unsigned key as a signed varint.
    """
    key = shuffle_key(seed, doc.content_hash)
    return key % num_buckets, (key, doc)


def sorted_bucket(keyed: Iterable[tuple[int, TokenizedDocument]]) -> list[TokenizedDocument]:
    """A bucket's documents in shuffled order."""
    # Equal keys mean equal content and equal ids, so any tie order gives the same bytes.
    return [doc for _, doc in sorted(keyed, key=lambda kd: (kd[0], kd[1].content_hash))]


class ShuffleDocuments(beam.PTransform):
    """``PCollection[TokenizedDocument]`` -> ``PCollection[tuple[int, list[TokenizedDocument]]]``."""

    def __init__(self, seed: int, num_buckets: int):
        super().__init__()
        self._seed = seed
        self._num_buckets = num_buckets

    def expand(self, documents):
        return (documents
                | "KeyByHash" >> beam.Map(keyed_by_bucket, self._seed, self._num_buckets)
                | "GroupBuckets" >> beam.GroupByKey()
                | "SortBucket" >> beam.MapTuple(lambda bucket, keyed: (bucket, sorted_bucket(keyed))))
