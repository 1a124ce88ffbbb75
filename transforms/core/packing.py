"""Packing shuffled documents into fixed-length chunks.

In: one bucket's ``TokenizedDocument``s in shuffled order. Out: its ``Chunk``s
of exactly ``context_length`` ids, numbered from 0 (the bucket's last chunk
may be shorter; FIM pads it). Each document is followed by ``<eot>``; the
stream is cut every ``context_length`` ids regardless of document
boundaries. Only the pending ids of one chunk are held beyond the bucket.
"""

from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np

from transforms.schema import Chunk, TokenizedDocument


def pack_bucket(bucket: int, documents: Iterable[TokenizedDocument], context_length: int,
                eot: int) -> Iterator[Chunk]:
    """The chunks of one bucket, in order, in the documents' dtype."""
    eot_array = None
    pending: list[np.ndarray] = []
    pending_len = 0
    index = 0
    for doc in documents:
        if eot_array is None:
            eot_array = np.array([eot], dtype=doc.ids.dtype)
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
