"""``fimflow inspect``: examples shown the way a person checks FIM data.

Each segment is printed on its own; a FIM segment shows its prefix, middle
and suffix in document order with the middle marked, plus its order (PSM or
SPM), so one can see at a glance that the three parts make up one text.
"""

from __future__ import annotations

import itertools
import json
from typing import Optional, TextIO

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from transforms.beam_workarounds import connect_anonymously_to_emulator
from transforms.core.records import read_tfrecords
from transforms.core.segments import parse_segment
from transforms.core.tokenizer import SpecialTokenNames, Tokenizer, read_model_bytes
from transforms.schema import METADATA_FILE

_STYLES = {"middle": "\033[1;30;43m", "label": "\033[1;36m", "sentinel": "\033[35m", "reset": "\033[0m"}


def _style(text: str, style: str, color: bool) -> str:
    return f"{_STYLES[style]}{text}{_STYLES['reset']}" if color else text


def read_examples(output: str, limit: Optional[int] = None) -> list[dict]:
    """Examples of a dataset as ``tf.data`` gives them to a trainer: lists of ids per feature."""
    try:
        import tensorflow as tf
    except ImportError as e:
        raise SystemExit("fimflow inspect reads records with tf.data: pip install 'fimflow[tf]'") from e

    with FileSystems.open(FileSystems.join(output, METADATA_FILE)) as f:
        metadata = json.load(f)
    length = metadata["context_length"]
    files = [FileSystems.join(output, entry["path"]) for entry in metadata["files"]]
    spec = {name: tf.io.FixedLenFeature([length], tf.int64) for name in metadata["features"]}
    if all("://" not in path for path in files):
        records = tf.data.TFRecordDataset(files)
    else:
        # TensorFlow's own gs:// client ignores STORAGE_EMULATOR_HOST and knows only some
        # of Beam's filesystems: read the records through Beam, parse them with TensorFlow.
        records = tf.data.Dataset.from_generator(lambda: itertools.islice(_records_through_beam(files), limit),
                                                 output_signature=tf.TensorSpec([], tf.string))
    dataset = records.map(lambda r: tf.io.parse_single_example(r, spec))
    if limit is not None:
        dataset = dataset.take(limit)
    return [{k: v.tolist() for k, v in ex.items()} for ex in dataset.as_numpy_iterator()]


def _records_through_beam(files: list[str]):
    for path in files:
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            yield from read_tfrecords(f)


def _text(tokenizer: Tokenizer, ids: list) -> str:
    return tokenizer.surface(ids).decode("utf-8", errors="replace")


def inspect_dataset(output: str, n: int, tokenizer_path: Optional[str], color: bool, out: TextIO) -> int:
    connect_anonymously_to_emulator()
    with FileSystems.open(FileSystems.join(output, METADATA_FILE)) as f:
        metadata = json.load(f)
    path = tokenizer_path or metadata["tokenizer"]["path"]
    tokenizer = Tokenizer(read_model_bytes(path), _names(metadata))
    label = lambda s: _style(s, "label", color)  # noqa: E731
    for number, example in enumerate(read_examples(output, n)):
        ids, segments = example["input_ids"], example["segment_ids"]
        padding = segments.count(0)
        out.write(label(f"=== example {number} ({len(ids) - padding} tokens, {padding} padding) ===") + "\n")
        for seg in sorted(set(segments) - {0}):
            seg_ids = [t for t, s in zip(ids, segments) if s == seg]
            part = parse_segment(seg_ids, tokenizer.special)
            eot = _style("<eot>", "sentinel", color) if part.eot else ""
            out.write(label(f"--- segment {seg}: {part.mode}, {len(seg_ids)} tokens ---") + "\n")
            if part.mode == "plain":
                out.write(_text(tokenizer, part.prefix) + eot + "\n")
                continue
            middle = _text(tokenizer, part.middle)
            out.write(_text(tokenizer, part.prefix) + _style("\u27e6" + middle + "\u27e7", "middle", color)
                      + _text(tokenizer, part.suffix) + eot + "\n")
    return 0


def _names(metadata: dict) -> SpecialTokenNames:
    options = metadata.get("options", {})
    defaults = SpecialTokenNames()
    return SpecialTokenNames(
        options.get("fim_prefix_token") or defaults.fim_prefix,
        options.get("fim_middle_token") or defaults.fim_middle,
        options.get("fim_suffix_token") or defaults.fim_suffix,
        options.get("pad_token") or defaults.pad,
        options.get("eot_token"))
