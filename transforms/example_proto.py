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

# The varint bytes of every value below 2**14, two per value (the second is
# unused for values below 128). Token positions, segment ids and the ids of
# vocabularies up to 16k are all below it: one lookup encodes them.
_TWO_BYTE_LIMIT = 1 << 14
_small = np.arange(_TWO_BYTE_LIMIT, dtype=np.uint32)
_TWO_BYTE_VARINTS = np.stack([(_small & 0x7F) | ((_small >= 0x80) << 7), _small >> 7], axis=1).astype(np.uint8)
del _small


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
    if top < _TWO_BYTE_LIMIT:
        keep = np.ones((len(v), 2), dtype=bool)
        keep[:, 1] = v >= 0x80
        return _TWO_BYTE_VARINTS[v][keep].tobytes()
    # 32-bit arithmetic is about twice as fast and covers every token id.
    dtype = np.uint32 if top < 1 << 32 else np.uint64
    v = v.astype(dtype)
    width = max(1, -(-top.bit_length() // 7))
    lengths = np.ones(len(v), dtype=np.int8)
    for k in range(1, width):
        lengths += v >= dtype(1 << (7 * k))
    out = np.empty((len(v), width), dtype=np.uint8)
    for k in range(width):
        out[:, k] = (v >> dtype(7 * k)) & dtype(0x7F)
        if k + 1 < width:
            out[:, k] |= (lengths > k + 1).astype(np.uint8) << 7
    return out[np.arange(width, dtype=np.int8)[None, :] < lengths[:, None]].tobytes()


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _int64_list(values: np.ndarray) -> bytes:
    packed = packed_varints(values)
    return _field(1, packed) if packed else b""  # An empty repeated field is omitted.


def serialize_int64_example(features: dict) -> bytes:
    """Serialized ``tf.train.Example`` with one Int64List per ``name -> array``; values must be >= 0.

    Map entries are sorted by name, as protobuf's deterministic serialization does.
    """
    entries = b"".join(
        _field(1, _field(1, name.encode()) + _field(2, _field(3, _int64_list(features[name]))))
        for name in sorted(features))
    return _field(1, entries)
