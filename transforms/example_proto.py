"""``tf.train.Example`` wire bytes for int64 features, without TensorFlow.

Building ``tf.train.Feature`` messages element by element costs more than
tokenizing the text they hold, and importing TensorFlow costs every worker
seconds and hundreds of MB. The format is small and fixed (Example ->
Features -> map entry -> Feature -> Int64List of packed varints), so it is
written here with numpy, byte for byte what TensorFlow's deterministic
serialization produces (a test compares the two on random examples).
"""

from __future__ import annotations

import numpy as np

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


def _header(number: int, length: int) -> bytes:
    """Tag and length of a length-delimited field."""
    return _varint(number << 3 | 2) + _varint(length)


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
        int64_list = [_header(1, len(packed)), packed] if packed else []
        feature = [_header(3, sum(map(len, int64_list))), *int64_list]
        key = name.encode()
        entry = [_header(1, len(key)), key, _header(2, sum(map(len, feature))), *feature]
        entries += [_header(1, sum(map(len, entry))), *entry]
    return b"".join([_header(1, sum(map(len, entries))), *entries])
