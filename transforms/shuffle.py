"""Seeded global shuffle of tokenized documents.

In: ``TokenizedDocument``. Out: ``(bucket, documents)`` with the documents of
each bucket in their shuffled order.

Each document's position in the shuffled corpus is a keyed hash of the seed
and its content, so the order depends only on the data and the seed, not on
the runner, the worker count or retries. The hash also assigns the document to
one of ``num_buckets`` buckets; the concatenation of buckets in bucket order is
one random permutation of the corpus, and each bucket is small enough to sort
in one worker's memory.
"""

from __future__ import annotations

import hashlib

import apache_beam as beam

from transforms.tokenize import TokenizedDocument


def shuffle_key(seed: int, content_hash: bytes) -> int:
    key = hashlib.blake2b(content_hash, digest_size=8, key=seed.to_bytes(16, "little", signed=True))
    return int.from_bytes(key.digest(), "little")


def _sorted_bucket(bucket_and_docs):
    bucket, keyed = bucket_and_docs
    # Equal keys mean equal content and equal ids, so any tie order gives the same bytes.
    return bucket, [doc for _, doc in sorted(keyed, key=lambda kd: (kd[0], kd[1].content_hash))]


class ShuffleDocuments(beam.PTransform):
    """``PCollection[TokenizedDocument]`` -> ``PCollection[tuple[int, list[TokenizedDocument]]]``."""

    def __init__(self, seed: int, num_buckets: int):
        super().__init__()
        self._seed = seed
        self._num_buckets = num_buckets

    def expand(self, documents):
        seed, num_buckets = self._seed, self._num_buckets

        def to_bucket(doc: TokenizedDocument):
            key = shuffle_key(seed, doc.content_hash)
            return key % num_buckets, (key, doc)

        return (documents
                | "KeyByHash" >> beam.Map(to_bucket)
                | "GroupBuckets" >> beam.GroupByKey()
                | "SortBucket" >> beam.Map(_sorted_bucket))
