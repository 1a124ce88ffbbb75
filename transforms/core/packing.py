"""Packing shuffled documents into fixed-length chunks.

In: one bucket's ``TokenizedDocument``s in shuffled order. Out: its ``Chunk``s
of exactly ``context_length`` ids, numbered from 0 (the bucket's last chunk
may be shorter; FIM pads it). Each document is followed by ``<eot>``; the
stream is cut every ``context_length`` ids regardless of document
boundaries, except that repository parts are kept whole where they fit. Only the pending ids of one chunk are held beyond the bucket.
"""

from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np

from transforms.schema import Chunk, TokenizedDocument


def pack_bucket(bucket: int, documents: Iterable[TokenizedDocument], context_length: int,
                eot: int, keep_whole_reserve: int = 0) -> Iterator[Chunk]:
    """The chunks of one bucket, in order, in the documents' dtype.

    ``keep_whole_reserve > 0`` (repository parts): each document counts that
    many ids more than it has (room for a FIM example's sentinels), and one
    that fits in a context but not in what is left of the current one starts
    the next chunk; the current one ends early, and FIM pads it.
    """
    eot_array = None
    pending: list[np.ndarray] = []
    pending_len = used = 0
    index = 0
    for doc in documents:
        if eot_array is None:
            eot_array = np.array([eot], dtype=doc.ids.dtype)
        cost = len(doc.ids) + 1 + keep_whole_reserve
        if keep_whole_reserve and pending_len and used + cost > context_length >= cost:
            yield Chunk(bucket, index, np.concatenate(pending))
            index += 1
            pending, pending_len, used = [], 0, 0
        pending += [doc.ids, eot_array]
        pending_len += len(doc.ids) + 1
        used += cost
        if pending_len >= context_length:
            stream = np.concatenate(pending)
            full = len(stream) - len(stream) % context_length
            for start in range(0, full, context_length):
                yield Chunk(bucket, index, stream[start:start + context_length])
                index += 1
            pending = [stream[full:]]
            pending_len = used = len(stream) - full
    if pending_len:
        yield Chunk(bucket, index, np.concatenate(pending))
