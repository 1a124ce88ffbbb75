"""The bytes of a shard: ``tf.train.Example`` records in TFRecord framing, without TensorFlow.

Building ``tf.train.Feature`` messages element by element costs more than
tokenizing the text they hold, and importing TensorFlow costs every worker
seconds and hundreds of MB. The format is small and fixed (Example ->
Features -> map entry -> Feature -> Int64List of packed varints), so it is
written here with numpy, byte for byte what TensorFlow's deterministic
serialization produces (a test compares the two on random examples).
TFRecord framing is length, masked CRC32C of the length, data, masked CRC32C
of the data; ``tf.data`` checks both checksums when it reads.
"""

from __future__ import annotations

import struct
from typing import Iterator

import google_crc32c
import numpy as np

from transforms.schema import EXAMPLE_FEATURES, Example


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def packed_varints(values: np.ndarray) -> bytes:
    """Protobuf varints of non-negative int64 ``values``, concatenated."""
    v = np.asarray(values)
    if v.size == 0:
        return b""
    if int(v.min()) < 0:
        raise ValueError("only non-negative values are supported")
    top = int(v.max())
    if top < 0x80:
        return v.astype(np.uint8).tobytes()
    # One row per value, one column per 7 bits; ``keep`` marks the bytes a
    # value's varint has. 32-bit arithmetic is about twice as fast and covers
    # every token id.
    width = -(-top.bit_length() // 7)
    v = v.astype(np.uint32 if top < 1 << 32 else np.uint64)
    out = np.empty((len(v), width), dtype=np.uint8)
    keep = np.empty((len(v), width), dtype=bool)
    keep[:, 0] = True
    for k in range(width):
        rest = v >> (7 * k)
        out[:, k] = rest & 0x7F
        if k + 1 < width:
            more = rest >= 0x80
            out[:, k] |= more.view(np.uint8) << 7
            keep[:, k + 1] = more
    return out[keep].tobytes()


def _field(number: int, parts: list) -> list:
    """A length-delimited field holding the bytes of ``parts``, as parts: its header, then them."""
    return [_varint(number << 3 | 2) + _varint(sum(map(len, parts))), *parts]


def serialize_int64_example(features: dict) -> bytes:
    """Serialized ``tf.train.Example`` with one Int64List per ``name -> array``; values must be >= 0.

    Map entries are sorted by name, as protobuf's deterministic serialization
    does. Headers are sized from the inside out and the record is joined once,
    so the value bytes are copied once rather than once per nesting level.
    """
    entries: list = []
    for name in sorted(features):
        packed = packed_varints(features[name])
        # Int64List{value: packed}; an empty repeated field is omitted.
        int64_list = _field(1, [packed]) if packed else []
        # Map entry {key: name, value: Feature{int64_list}}.
        entries += _field(1, _field(1, [name.encode()]) + _field(2, _field(3, int64_list)))
    return b"".join(_field(1, entries))


def _masked_crc32c(data: bytes) -> bytes:
    crc = google_crc32c.value(data)
    return struct.pack("<I", (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


def tfrecord_frame(record: bytes) -> bytes:
    """``record`` as one TFRecord: what a shard holds for it."""
    length = struct.pack("<Q", len(record))
    return b"".join((length, _masked_crc32c(length), record, _masked_crc32c(record)))


def example_record(example: Example) -> bytes:
    """The ``tf.train.Example`` bytes of one example, as the shards hold them."""
    return serialize_int64_example({name: getattr(example, name) for name in EXAMPLE_FEATURES})


def read_tfrecords(f) -> Iterator[bytes]:
    """The records of a TFRecord file object, both checksums verified; ``ValueError`` where one fails."""
    while header := f.read(12):
        if len(header) < 12 or header[8:] != _masked_crc32c(header[:8]):
            raise ValueError("corrupt TFRecord header")
        (length,) = struct.unpack("<Q", header[:8])
        record, crc = f.read(length), f.read(4)
        if len(record) < length or crc != _masked_crc32c(record):
            raise ValueError("corrupt or truncated TFRecord")
        yield record
