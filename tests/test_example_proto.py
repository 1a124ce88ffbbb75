"""The hand-written Example serializer against TensorFlow's own."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from transforms.core.records import serialize_int64_example

# The largest value picks the encoder's path: one byte, the two-byte table, or general varints.
values = st.sampled_from([0, 127, 128, 2**14 - 1, 2**14, 2**21, 2**63 - 1]).flatmap(
    lambda top: hnp.arrays(np.int64, st.integers(0, 64), elements=st.integers(0, top)))


@settings(max_examples=500, deadline=None)
@given(a=values, b=values, c=values)
def test_bytes_equal_tensorflow_deterministic_serialization(a, b, c):
    features = {"input_ids": a, "segment_ids": b, "positions": c}
    expected = tf.train.Example(features=tf.train.Features(feature={
        k: tf.train.Feature(int64_list=tf.train.Int64List(value=v)) for k, v in features.items()
    })).SerializeToString(deterministic=True)
    assert serialize_int64_example(features) == expected


def test_parses_back_with_tf_io():
    ids = np.arange(300, dtype=np.int64) * 977
    record = serialize_int64_example({"input_ids": ids})
    parsed = tf.io.parse_single_example(record, {"input_ids": tf.io.FixedLenFeature([300], tf.int64)})
    assert parsed["input_ids"].numpy().tolist() == ids.tolist()


def test_tfrecord_framing_round_trips_with_tensorflows_writer(tmp_path):
    import io

    import pytest

    from transforms.core.records import read_tfrecords, tfrecord_frame

    records = [b"", b"x", bytes(range(256)) * 40]
    path = tmp_path / "tf.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in records:
            writer.write(record)
    framed = b"".join(map(tfrecord_frame, records))
    assert path.read_bytes() == framed
    assert list(read_tfrecords(io.BytesIO(framed))) == records
    for corrupt in (framed[:-1], framed[:20] + bytes([framed[20] ^ 1]) + framed[21:]):
        with pytest.raises(ValueError, match="corrupt"):
            list(read_tfrecords(io.BytesIO(corrupt)))
