"""Writing examples and dead letters to deterministic shards, then metadata.json.

``WriteExamples``: ``Example`` -> ``train-SSSSS-of-NNNNN.tfrecord`` files of
serialized ``tf.train.Example``; returns ``ShardInfo`` per file.
``WriteRejected``: ``Rejected`` -> ``errors/rejected-SSSSS-of-NNNNN.jsonl``.
``WriteMetadata``: statistics and shard infos -> ``metadata.json``, written
after every shard exists, so its presence means the dataset is complete.

Which shard an element goes to and its place in that shard depend only on a
hash of its identity, so the files are byte-identical on every runner and
worker count. Every shard is written, empty or not, so readers can rely on
``-of-NNNNN``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Callable, NamedTuple

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.tfrecordio import _TFRecordUtil

from transforms.example_proto import serialize_int64_example
from transforms.fim import FRAGMENT_HISTOGRAM_PREFIX, Example
from transforms.read import SKIP_REASONS, Rejected
from transforms.storage import connect_anonymously_to_emulator

METADATA_FILE = "metadata.json"
EXAMPLE_FEATURES = ("input_ids", "segment_ids", "positions")


def example_record(example: Example) -> bytes:
    """The ``tf.train.Example`` bytes of one example, as the shards hold them."""
    return serialize_int64_example({name: getattr(example, name) for name in EXAMPLE_FEATURES})
ERRORS_DIR = "errors"


class ShardInfo(NamedTuple):
    path: str
    records: int
    bytes: int


def shard_path(prefix: str, shard: int, num_shards: int, suffix: str) -> str:
    return f"{prefix}-{shard:05d}-of-{num_shards:05d}{suffix}"


def example_key(seed: int, bucket: int, index: int) -> int:
    digest = hashlib.blake2b(f"shard:{seed}:{bucket}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _write_tfrecord(f, record: bytes):
    _TFRecordUtil.write_record(f, record)


def _write_line(f, record: bytes):
    f.write(record + b"\n")


class _WriteShardFn(beam.DoFn):
    def __init__(self, prefix: str, num_shards: int, suffix: str,
                 write_record: Callable[[Any, bytes], None]):
        self._prefix = prefix
        self._num_shards = num_shards
        self._suffix = suffix
        self._write_record = write_record

    def setup(self):
        connect_anonymously_to_emulator()

    def process(self, shard_and_records):
        shard, keyed = shard_and_records
        records = sorted(kr for kr in keyed if kr is not None)
        path = shard_path(self._prefix, shard, self._num_shards, self._suffix)
        size = 0
        with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            for _, record in records:
                self._write_record(f, record)
                size += len(record)
        yield ShardInfo(path, len(records), size)


class WriteSortedShards(beam.PTransform):
    """``PCollection[(shard, (sort_key, bytes))]`` -> ``PCollection[ShardInfo]``, one per shard."""

    def __init__(self, prefix: str, num_shards: int, suffix: str,
                 write_record: Callable[[Any, bytes], None]):
        super().__init__()
        self._num_shards = num_shards
        self._fn = _WriteShardFn(prefix, num_shards, suffix, write_record)

    def expand(self, keyed_records):
        every_shard = (keyed_records.pipeline
                       | "EveryShard" >> beam.Create([(s, None) for s in range(self._num_shards)]))
        return ((keyed_records, every_shard)
                | "WithEveryShard" >> beam.Flatten()
                | "GroupShards" >> beam.GroupByKey()
                | "WriteShard" >> beam.ParDo(self._fn))


class _SerializeFn(beam.DoFn):
    def __init__(self, seed: int, num_shards: int):
        self._seed = seed
        self._num_shards = num_shards

    def process(self, example: Example):
        record = example_record(example)
        key = example_key(self._seed, example.bucket, example.index)
        yield key % self._num_shards, (key, record)


class WriteExamples(beam.PTransform):
    """``PCollection[Example]`` -> ``PCollection[ShardInfo]`` of ``OUTPUT/train-*.tfrecord``."""

    def __init__(self, output_dir: str, num_shards: int, seed: int):
        super().__init__()
        self._output_dir = output_dir
        self._num_shards = num_shards
        self._seed = seed

    def expand(self, examples):
        return (examples
                | "Serialize" >> beam.ParDo(_SerializeFn(self._seed, self._num_shards))
                | "Write" >> WriteSortedShards(FileSystems.join(self._output_dir, "train"),
                                               self._num_shards, ".tfrecord", _write_tfrecord))


class WriteRejected(beam.PTransform):
    """``PCollection[Rejected]`` -> ``PCollection[ShardInfo]`` of ``OUTPUT/errors/rejected-*.jsonl``."""

    def __init__(self, output_dir: str):
        super().__init__()
        self._prefix = FileSystems.join(output_dir, ERRORS_DIR, "rejected")

    def expand(self, rejected):
        return (rejected
                | "Key" >> beam.Map(lambda r: (0, ((r.source, r.index, r.reason), r.as_json().encode())))
                | "Write" >> WriteSortedShards(self._prefix, 1, ".jsonl", _write_line))


def rejected_stats(rejected: Rejected) -> dict:
    errors = 0 if rejected.reason in SKIP_REASONS else 1
    return {"records_rejected": 1, "records_in_error": errors, f"rejected/{rejected.reason}": 1}


def remove_dataset_files(output_dir: str) -> list[str]:
    """Deletes what an earlier run wrote at ``output_dir``, ``metadata.json`` first.

    Removing the completion marker before anything else means that a reader
    never sees a marker next to shards of another run, and that stale shards
    with another ``-of-NNNNN`` never sit beside the new ones. Only fimflow's own
    file names are touched.
    """
    connect_anonymously_to_emulator()
    metadata = FileSystems.join(output_dir, METADATA_FILE)
    removed = [metadata] if FileSystems.exists(metadata) else []
    if removed:
        FileSystems.delete(removed)
    patterns = [FileSystems.join(output_dir, "train-*-of-*.tfrecord"),
                FileSystems.join(output_dir, ERRORS_DIR, "rejected-*-of-*.jsonl")]
    stale = [m.path for result in FileSystems.match(patterns) for m in result.metadata_list]
    if stale:
        FileSystems.delete(stale)
    return removed + stale


class DatasetIncompleteError(RuntimeError):
    """The run finished but its output must not be used; no metadata.json was written."""


def _ratio(a: float, b: float) -> float:
    return round(a / b, 6) if b else 0.0


def summarize(stats: dict) -> dict:
    """The derived measurements metadata.json reports next to the raw counts."""
    fim = stats.get("fim_fragments", 0)
    padding = stats.get("padding_tokens", 0)
    histogram = {int(k[len(FRAGMENT_HISTOGRAM_PREFIX):]): v
                 for k, v in stats.items() if k.startswith(FRAGMENT_HISTOGRAM_PREFIX)}
    return {
        # Transformed share of what could be: fragments (context level) or documents (document level).
        "fim_rate_observed": _ratio(fim, stats.get("fim_candidates", 0)),
        "fim_token_share": _ratio(stats.get("fim_tokens", 0), stats.get("example_tokens", 0)),
        "spm_share_of_fim": _ratio(stats.get("spm_fragments", 0), fim),
        "padding_share": _ratio(padding, padding + stats.get("example_tokens", 0)),
        "fragment_tokens_histogram": {f"<={k}": histogram[k] for k in sorted(histogram)},
    }


class _WriteMetadataFn(beam.DoFn):
    def __init__(self, output_dir: str, static: dict, max_error_fraction: float):
        self._output_dir = output_dir
        self._static = static
        self._max_error_fraction = max_error_fraction

    def setup(self):
        connect_anonymously_to_emulator()

    def process(self, _, stats: dict, shards: list, error_shards: list):
        rejected = stats.get("records_rejected", 0)
        in_error = stats.get("records_in_error", 0)
        records = stats.get("documents", 0) + rejected
        reasons = {k.split("/", 1)[1]: v for k, v in stats.items() if k.startswith("rejected/")}
        if records == 0:
            raise DatasetIncompleteError("no documents were read; metadata.json not written")
        if in_error / records > self._max_error_fraction:
            errors = sorted((-n, r) for r, n in reasons.items() if r not in SKIP_REASONS)
            top = ", ".join(f"{r}: {-n}" for n, r in errors[:5])
            raise DatasetIncompleteError(
                f"{in_error} of {records} records in error ({in_error / records:.2%}), above "
                f"--max_error_fraction={self._max_error_fraction}; top reasons: {top}. "
                f"See {FileSystems.join(self._output_dir, ERRORS_DIR)}; metadata.json not written.")
        relative = lambda path: path[len(self._output_dir):].lstrip("/")  # noqa: E731
        metadata = dict(self._static)
        metadata.update({
            "files": [{"path": relative(s.path), "examples": s.records}
                      for s in sorted(shards, key=lambda s: s.path)],
            "errors": {"records_read": records, "records_rejected": rejected,
                       "records_in_error": in_error, "by_reason": reasons,
                       "files": [relative(s.path) for s in error_shards]},
            "counts": {k: v for k, v in stats.items()
                       if not k.startswith(("rejected/", FRAGMENT_HISTOGRAM_PREFIX))},
            "measured": summarize(stats),
        })
        path = FileSystems.join(self._output_dir, METADATA_FILE)
        with FileSystems.create(path, mime_type="application/json") as f:
            f.write(json.dumps(metadata, indent=2, sort_keys=True).encode() + b"\n")
        yield path


class WriteMetadata(beam.PTransform):
    """Writes ``OUTPUT/metadata.json`` once ``shards`` and ``error_shards`` are complete.

    In: the merged statistics (one dict) as the input; ``ShardInfo``s of the
    dataset and of the dead letters as side inputs. Out: the metadata path.
    Fails the pipeline instead, writing nothing, when too many records were
    rejected.
    """

    def __init__(self, output_dir: str, static: dict, max_error_fraction: float,
                 shards, error_shards):
        super().__init__()
        self._fn = _WriteMetadataFn(output_dir, static, max_error_fraction)
        self._shards = shards
        self._error_shards = error_shards

    def expand(self, stats):
        return (stats.pipeline
                | "Trigger" >> beam.Create([None])
                | "Write" >> beam.ParDo(self._fn, stats=beam.pvalue.AsSingleton(stats),
                                        shards=beam.pvalue.AsList(self._shards),
                                        error_shards=beam.pvalue.AsList(self._error_shards)))
