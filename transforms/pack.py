"""Packing a shuffled bucket into fixed-length chunks (``transforms.core.packing``), as a step.

In: ``(bucket, documents)`` in shuffled order. Out: ``Chunk``s of exactly
``context_length`` ids (a bucket's last chunk may be shorter; FIM pads it),
and statistics: chunks. ``transforms.shards`` runs it per bucket.
"""

from __future__ import annotations

from transforms.core.packing import pack_bucket
from transforms.schema import Stats


class PackStep:
    def __init__(self, context_length: int, eot: int, keep_whole_reserve: int = 0):
        self._context_length = context_length
        self._eot = eot
        self._keep_whole_reserve = keep_whole_reserve

    def __call__(self, bucket_and_documents, stats: Stats):
        bucket, documents = bucket_and_documents
        for chunk in pack_bucket(bucket, documents, self._context_length, self._eot, self._keep_whole_reserve):
            stats["chunks"] += 1
            yield chunk
