"""``megatron``: Megatron-LM's indexed dataset (``MMapIndexedDataset``, ``megatron.core.datasets.
indexed_dataset.IndexedDataset``), one sequence and one document per example.

Two datasets per shard, each a ``.bin`` of ids and a ``.idx``: the tokens
(``PREFIX-SSSSS-of-NNNNN.bin``/``.idx``), and their ``segment_ids``
(``....segment_ids.bin``/``.idx``), for trainers that mask attention by
segment. Megatron's ``GPTDataset`` reads the tokens only; with
``sequence_length`` = the context length and ``add_extra_token_to_sequence=
False`` each of its samples is exactly one example, and it masks the loss
where a label is the pad id. ``positions`` restart at each segment, so they
follow from the segment ids.

The ``.idx`` layout, as Megatron-LM's ``_IndexWriter`` writes it
(``megatron/core/datasets/indexed_dataset.py``, megatron-core 0.16): the
header ``MMIDIDX\\x00\\x00``, version 1 (``<Q``), the dtype code (``<B``;
uint16 is 8, int32 is 4, chosen as Megatron's ``DType.optimal_dtype``:
uint16 below 65500 values, else int32), the sequence count and the document
count (``<Q`` each), then the int32 sequence lengths, the int64 byte offsets
of the sequences in ``.bin``, and the int64 document indices (0, 1, ... n:
each sequence one document).
"""

from __future__ import annotations

import struct
from typing import Iterator, Optional

import numpy as np
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from transforms.sinks.base import RecordSink, SinkLayout
from transforms.schema import Example

INDEX_HEADER = b"MMIDIDX\x00\x00"
DTYPE_CODES = {np.dtype(np.uint16): 8, np.dtype(np.int32): 4}
SEGMENTS = ".segment_ids"


def optimal_dtype(cardinality: int) -> np.dtype:
    """Megatron's ``DType.optimal_dtype``: the dtype of ids below ``cardinality``."""
    return np.dtype(np.uint16 if cardinality < 65500 else np.int32)


def index_bytes(dtype: np.dtype, sequences: int, length: int) -> bytes:
    """The ``.idx`` of ``sequences`` sequences of ``length`` ids each, one document each."""
    return b"".join((INDEX_HEADER, struct.pack("<Q", 1), struct.pack("<B", DTYPE_CODES[dtype]),
                     struct.pack("<Q", sequences), struct.pack("<Q", sequences + 1),
                     np.full(sequences, length, dtype=np.int32).tobytes(),
                     (np.arange(sequences, dtype=np.int64) * length * dtype.itemsize).tobytes(),
                     np.arange(sequences + 1, dtype=np.int64).tobytes()))


class MegatronSink(RecordSink):
    name = "megatron"
    suffixes = (".bin", ".idx", f"{SEGMENTS}.bin", f"{SEGMENTS}.idx")
    reading = ("megatron.core.datasets.indexed_dataset.IndexedDataset(PREFIX), GPTDataset with "
               "sequence_length = context_length and add_extra_token_to_sequence=False")

    def __init__(self, files, shard, layout):
        super().__init__(files, shard, layout)
        self._token_dtype = optimal_dtype(layout.vocab_size)
        # Segment ids run from 0 (padding) to at most one per token.
        self._segment_dtype = optimal_dtype(layout.context_length + 1)
        self._tokens = files.open(self.path(".bin"))
        self._segments = files.open(self.path(f"{SEGMENTS}.bin"))
        self._sequences = 0

    def write(self, example: Example, record: Optional[bytes]) -> None:
        self._tokens.write(example.input_ids.astype(self._token_dtype).tobytes())
        self._segments.write(example.segment_ids.astype(self._segment_dtype).tobytes())
        self._sequences += 1

    def close(self) -> None:
        length = self._layout.context_length
        for suffix, dtype in ((".idx", self._token_dtype), (f"{SEGMENTS}.idx", self._segment_dtype)):
            self._files.open(self.path(suffix)).write(index_bytes(dtype, self._sequences, length))

    @classmethod
    def read_features(cls, path: str, layout: SinkLayout) -> Iterator[dict[str, np.ndarray]]:
        prefix = path[:-len(".bin")]
        input_ids = _read_sequences(prefix, layout.context_length)
        segment_ids = _read_sequences(prefix + SEGMENTS, layout.context_length)
        for ids, segments in zip(input_ids, segment_ids):
            starts = np.flatnonzero(np.diff(segments, prepend=-1))
            lengths = np.diff(np.append(starts, len(segments)))
            positions = np.arange(len(segments)) - np.repeat(starts, lengths)
            yield {"input_ids": ids, "segment_ids": segments, "positions": np.where(segments > 0, positions, 0)}


def _read_sequences(prefix: str, length: int) -> np.ndarray:
    """The sequences of one ``.bin``/``.idx`` pair, as int64 rows of ``length``."""
    with FileSystems.open(prefix + ".idx", compression_type=CompressionTypes.UNCOMPRESSED) as f:
        index = f.read()
    if index[:9] != INDEX_HEADER:
        raise ValueError(f"{prefix}.idx is not a Megatron index")
    dtype = {code: dtype for dtype, code in DTYPE_CODES.items()}[index[17]]
    (sequences,) = struct.unpack("<Q", index[18:26])
    with FileSystems.open(prefix + ".bin", compression_type=CompressionTypes.UNCOMPRESSED) as f:
        ids = np.frombuffer(f.read(), dtype=dtype)
    return ids.astype(np.int64).reshape(sequences, length)


SINK = MegatronSink
