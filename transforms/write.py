"""Writing examples and dead letters to deterministic shards, then metadata.json.

``WriteRejected``: ``Rejected`` -> ``errors/rejected-SSSSS-of-NNNNN.jsonl``.
``WriteMetadata``: statistics and shard infos -> ``metadata.json``, written
after every shard exists, so its presence means the dataset is complete.

Every file is written under a temporary name beginning ``.tmp-`` and renamed
when complete (``transforms.files``), so a file under a final name is always
whole: a full disk, a kill or a failed bundle leaves at most a temporary file,
which the next run removes.

Which shard a dead letter goes to and its place in that shard depend only on
its source and position, so the files are byte-identical on every runner and
worker count. Every shard is written, empty or not, so readers can rely on
``-of-NNNNN``. The examples' shards are written by ``transforms.shards``.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from typing import Optional

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from transforms.core.hashing import rejected_shard_key
from transforms.files import TEMPORARY_PREFIX, ShardName, write_atomically
from transforms.core.splits import EXAMPLE_PREFIXES
from transforms.output_lock import check_lock_holder, release_lock
from transforms.sinks import DEFAULT_OUTPUT_FORMAT, OUTPUT_FORMATS
from transforms.schema import (CLUSTER_HISTOGRAM_PREFIX, DOCUMENT_HISTOGRAM_PREFIX, ERRORS_DIR, EVAL_DIR, EVAL_TASKS,
                               FRAGMENT_HISTOGRAM_PREFIX, HISTOGRAM_PREFIXES, INPUT_BYTES, INPUT_FILES,
                               INPUT_FINGERPRINT, METADATA_FILE, MIDDLE_HISTOGRAM_PREFIX, REJECTED_PREFIX,
                               REJECTED_REASON_PREFIX, SKIP_REASONS, SOURCE_PREFIX, SPLIT_PREFIX,
                               CONTAMINATION_PREFIX, Rejected, ShardInfo)

logger = logging.getLogger(__name__)


class _WriteRejectedShardFn(beam.DoFn):
    def __init__(self, prefix: str, num_shards: int):
        self._prefix = prefix
        self._num_shards = num_shards

    def process(self, shard_and_records):
        shard, keyed = shard_and_records
        records = sorted(kr for kr in keyed if kr is not None)
        path = str(ShardName(self._prefix, shard, self._num_shards, ".jsonl"))

        def write(f) -> None:
            for _, line in records:
                f.write(line + b"\n")

        write_atomically(path, write)
        logger.debug("wrote %s: %d records", path, len(records))
        yield ShardInfo(path, len(records), "jsonl")


class _WriteEvalSetFn(beam.DoFn):
    def __init__(self, output_dir: str):
        self._output_dir = output_dir

    def process(self, task_and_problems):
        task, problems = task_and_problems
        content = b"".join(json.dumps(p, ensure_ascii=False, sort_keys=True).encode() + b"\n" for p in problems)
        path = FileSystems.join(self._output_dir, EVAL_DIR, f"{task}.jsonl")
        write_atomically(path, lambda f: f.write(content), mime_type="application/jsonl")
        yield task, len(problems)


class WriteEvalSets(beam.PTransform):
    """``PCollection[(task, [problem])]`` -> ``PCollection[(task, problems written)]``: each task's
    problems as ``OUTPUT/eval/<task>.jsonl``, one JSON object per line, in the order given."""

    def __init__(self, output_dir: str):
        super().__init__()
        self._fn = _WriteEvalSetFn(output_dir)

    def expand(self, tasks):
        return tasks | "Write" >> beam.ParDo(self._fn)


class WriteRejected(beam.PTransform):
    """``PCollection[Rejected]`` -> ``PCollection[ShardInfo]`` of ``OUTPUT/errors/rejected-*.jsonl``.

    Spread over ``num_shards`` by a hash of each record's source and position,
    so no one worker sorts every dead letter of a badly broken corpus; each
    shard is sorted by source, position and reason.
    """

    def __init__(self, output_dir: str, num_shards: int):
        super().__init__()
        self._prefix = FileSystems.join(output_dir, ERRORS_DIR, REJECTED_PREFIX)
        self._num_shards = num_shards

    def expand(self, rejected):
        num_shards = self._num_shards

        # Not annotated: Beam would code the 64-bit unsigned key as a signed varint.
        def keyed_record(r):
            # The source as bytes: Beam codes str as strict UTF-8, and a file name
            # need not be; UTF-8 bytes sort as their text does.
            source = r.source.encode("utf-8", "surrogateescape")
            shard = rejected_shard_key(source, r.position) % num_shards
            return shard, ((source, r.position, r.reason), r.as_json_line())

        # Every shard is written, empty or not, so readers can rely on -of-NNNNN.
        every_shard = rejected.pipeline | "EveryShard" >> beam.Create([(s, None) for s in range(num_shards)])
        return ((rejected | "Key" >> beam.Map(keyed_record).with_input_types(Rejected), every_shard)
                | "WithEveryShard" >> beam.Flatten()
                | "GroupShards" >> beam.GroupByKey()
                | "WriteShard" >> beam.ParDo(_WriteRejectedShardFn(self._prefix, num_shards))
                .with_output_types(ShardInfo))


def remove_dataset_files(output_dir: str) -> list[str]:
    """Deletes what an earlier run wrote at ``output_dir``, ``metadata.json`` first.

    Removing the completion marker before anything else means that a reader
    never sees a marker next to shards of another run, and that stale shards
    with another ``-of-NNNNN`` never sit beside the new ones. Only fimflow's own
    file names are touched: those of every output format, whichever this run writes.
    """
    metadata = FileSystems.join(output_dir, METADATA_FILE)
    removed = [metadata] if FileSystems.exists(metadata) else []
    if removed:
        FileSystems.delete(removed)
    patterns = [*(FileSystems.join(output_dir, f"{prefix}-*-of-*{suffix}") for prefix in EXAMPLE_PREFIXES
                  for sink in OUTPUT_FORMATS.values() for suffix in sink.suffixes),
                *(FileSystems.join(output_dir, EVAL_DIR, f"{task}.jsonl") for task in EVAL_TASKS),
                FileSystems.join(output_dir, ERRORS_DIR, f"{REJECTED_PREFIX}-*-of-*.jsonl"),
                FileSystems.join(output_dir, f"{TEMPORARY_PREFIX}*"),
                FileSystems.join(output_dir, ERRORS_DIR, f"{TEMPORARY_PREFIX}*")]
    # One file can match two patterns (``*.bin`` and ``*.segment_ids.bin``).
    stale = sorted({m.path for result in FileSystems.match(patterns) for m in result.metadata_list})
    if stale:
        FileSystems.delete(stale)
    return removed + stale


class DatasetIncompleteError(RuntimeError):
    """The run finished but its output must not be used; no metadata.json was written."""


def _ratio(a: float, b: float) -> float:
    return round(a / b, 6) if b else 0.0


def histogram(stats: dict, prefix: str) -> dict:
    """Counts named ``prefix`` + bound, as ``{"<=bound": count}`` in order of the bounds."""
    bins = {int(k[len(prefix):]): v for k, v in stats.items() if k.startswith(prefix)}
    return {f"<={k}": bins[k] for k in sorted(bins)}


def dedup_section(static: dict, stats: dict) -> dict:
    """What the dedup removed: identical copies (in the training split's shuffle) and, with ``--dedup near``,
    near-duplicate clusters (before the split)."""
    section = {**static, **{name: stats.get(key, 0) for name, key in (
        ("removed", "duplicates_removed"), ("text_bytes_saved", "duplicate_text_bytes_removed"),
        ("tokens_saved", "duplicate_tokens_removed"))}}
    if static.get("mode") == "near":
        section["near"] = {**static.get("near", {}), **{name: stats.get(key, 0) for name, key in (
            ("clusters", "near_duplicate_clusters"), ("removed", "near_duplicates_removed"),
            ("text_bytes_saved", "near_duplicate_text_bytes_removed"),
            ("nodes_unconverged", "near_duplicate_nodes_unconverged"),
            ("shuffled_bytes_estimate", "near_dedup_shuffled_bytes"))},
            "cluster_size_histogram": histogram(stats, CLUSTER_HISTOGRAM_PREFIX)}
    return section


def summarize(stats: dict) -> dict:
    """The derived measurements metadata.json reports next to the raw counts."""
    fim = stats.get("fim_fragments", 0)
    padding = stats.get("padding_tokens", 0)

    return {
        # Transformed share of what could be: fragments (context level) or documents (document level).
        "fim_rate_observed": _ratio(fim, stats.get("fim_candidates", 0)),
        "fim_token_share": _ratio(stats.get("fim_tokens", 0), stats.get("example_tokens", 0)),
        "spm_share_of_fim": _ratio(stats.get("spm_fragments", 0), fim),
        "padding_share": _ratio(padding, padding + stats.get("example_tokens", 0)),
        # Counts by the least power of two at or above the length, in tokens.
        "document_tokens_histogram": histogram(stats, DOCUMENT_HISTOGRAM_PREFIX),
        "fragment_tokens_histogram": histogram(stats, FRAGMENT_HISTOGRAM_PREFIX),
        "middle_tokens_histogram": histogram(stats, MIDDLE_HISTOGRAM_PREFIX),
    }


def check_inputs_as_planned(planned: dict, matched: dict) -> None:
    """Raises ``DatasetIncompleteError`` unless the workers matched exactly the planned files
    (``transforms.match.input_stats`` of each)."""
    if any(planned.get(k, 0) != matched.get(k, 0) for k in (INPUT_FILES, INPUT_BYTES, INPUT_FINGERPRINT)):
        raise DatasetIncompleteError(
            f"the inputs changed between planning and reading: {planned.get(INPUT_FILES, 0)} file(s) of "
            f"{planned.get(INPUT_BYTES, 0)} bytes planned, {matched.get(INPUT_FILES, 0)} file(s) of "
            f"{matched.get(INPUT_BYTES, 0)} bytes found when reading (a file added, deleted, grown, "
            "truncated or replaced); metadata.json not written")


def check_shards(planned: dict, shards: list, formats=(DEFAULT_OUTPUT_FORMAT,)) -> None:
    """Raises ``DatasetIncompleteError`` unless ``shards`` (``ShardInfo``) are exactly the ``planned``
    count of shards of each file prefix (``train``, ``validation_ar``...) in each output format."""
    found = Counter(f"{ShardName.parse(shard.path).base_name} ({shard.format})" for shard in shards)
    planned = {f"{prefix} ({name})": count for prefix, count in planned.items() for name in formats}
    if found != Counter(planned):
        raise DatasetIncompleteError(
            f"the shards written ({dict(sorted(found.items()))}) are not the shards planned "
            f"({dict(sorted(planned.items()))}); metadata.json not written")


def check_complete(stats: dict, max_error_fraction: float, errors_dir: str, input_bytes: int = 0) -> None:
    """Raises ``DatasetIncompleteError`` unless every record read is accounted for and errors are in budget.

    The budget holds for records and for the bytes of files that could not
    be read to the end: such a file may have held many records.
    """
    unreadable = stats.get("bytes_in_error", 0)
    if input_bytes and unreadable / input_bytes > max_error_fraction:
        raise DatasetIncompleteError(
            f"{unreadable} of {input_bytes} input bytes are in files that could not be read to the end "
            f"({unreadable / input_bytes:.2%}), above --max_error_fraction={max_error_fraction}. "
            f"See the unreadable_file lines in {errors_dir}; metadata.json not written.")
    if stats.get("bytes_read", 0) != stats.get("input_bytes", 0):
        raise DatasetIncompleteError(
            f"{stats.get('bytes_read', 0)} of the {stats.get('input_bytes', 0)} bytes of the files matched were "
            "read; files or ranges were lost. metadata.json not written.")
    records = stats.get("records_read", 0)
    documents = stats.get("documents", 0)
    rejected = stats.get("records_rejected", 0)
    in_error = stats.get("records_in_error", 0)
    # Near-duplicates are removed on purpose before tokenizing (not dead letters: they are no errors).
    near = stats.get("near_duplicates_removed", 0)
    if records == 0:
        raise DatasetIncompleteError("no documents were read; metadata.json not written")
    if records != documents + rejected + near:
        raise DatasetIncompleteError(
            f"{records} records read but {documents} documents, {rejected} rejected records and {near} "
            "near-duplicates removed came out; records were lost between stages. metadata.json not written.")
    if in_error / records > max_error_fraction:
        reasons = {k[len(REJECTED_REASON_PREFIX):]: v for k, v in stats.items()
                   if k.startswith(REJECTED_REASON_PREFIX)}
        errors = sorted((-n, r) for r, n in reasons.items() if r not in SKIP_REASONS)
        top = ", ".join(f"{r}: {-n}" for n, r in errors[:5])
        raise DatasetIncompleteError(
            f"{in_error} of {records} records in error ({in_error / records:.2%}), above "
            f"--max_error_fraction={max_error_fraction}; top reasons: {top}. "
            f"See {errors_dir}; leave files out with --include/--exclude (e.g. --exclude '*.min.js'). "
            "metadata.json not written.")


def sources(stats: dict) -> dict:
    """``{"pattern": {PATTERN: counts}, "language": {LANGUAGE: counts}}`` from the per-source statistics:
    documents, tokens and text characters per input pattern and per language, input files and bytes and
    rejected records per pattern."""
    result: dict = {"pattern": {}, "language": {}}
    for key, value in stats.items():
        if key.startswith(SOURCE_PREFIX):
            kind, rest = key[len(SOURCE_PREFIX):].split("/", 1)
            source, name = rest.rsplit("/", 1)
            result[kind].setdefault(source, {})[name] = value
    return {kind: dict(sorted(by.items())) for kind, by in result.items()}


def splits(stats: dict, shards: list, relative, counted_format: str = DEFAULT_OUTPUT_FORMAT) -> dict:
    """Per split and held-out copy (``validation_ar``...): its examples (in the files of
    ``counted_format``; every format holds the same), its files and its own statistics (``SPLIT_PREFIX``
    + name + ``/`` + count). Empty for a run without held-out splits."""
    result: dict = {}
    for key, value in stats.items():
        if key.startswith(SPLIT_PREFIX):
            name, count = key[len(SPLIT_PREFIX):].split("/", 1)
            if not count.startswith(HISTOGRAM_PREFIXES):
                result.setdefault(name, {})[count] = value
    if not result:
        return {}
    for shard in sorted(shards, key=lambda s: s.path):
        entry = result.setdefault(ShardName.parse(relative(shard.path)).prefix, {})
        if shard.format == counted_format:
            entry["examples"] = entry.get("examples", 0) + shard.records
        entry.setdefault("files", []).append(relative(shard.path))
    return dict(sorted(result.items()))


def output_formats(metadata: dict) -> list[str]:
    """The output formats of a dataset's (static) metadata, the first the one its counts are read from."""
    return [entry["name"] for entry in metadata.get("output_formats", ())] or [DEFAULT_OUTPUT_FORMAT]


def dataset_metadata(static: dict, stats: dict, output_dir: str, shards: list, error_shards: list) -> dict:
    """``metadata.json``'s content: what was known before the run, and what the run counted and wrote."""
    relative = lambda path: path[len(output_dir):].lstrip("/")  # noqa: E731
    reasons = {k[len(REJECTED_REASON_PREFIX):]: v for k, v in stats.items() if k.startswith(REJECTED_REASON_PREFIX)}
    metadata = dict(static)
    metadata.update({
        "files": [{"path": relative(s.path), "examples": s.records, "format": s.format}
                  for s in sorted(shards, key=lambda s: s.path)],
        "errors": {"records_read": stats.get("records_read", 0),
                   "records_rejected": stats.get("records_rejected", 0),
                   "records_in_error": stats.get("records_in_error", 0), "by_reason": reasons,
                   "files": [relative(s.path) for s in error_shards]},
        "sources": sources(stats),
        "dedup": dedup_section(static.get("dedup", {}), stats),
        "splits": splits(stats, shards, relative, output_formats(static)[0]),
        "decontamination": static.get("decontamination") and {
            **static["decontamination"], "files": {
                path: {**entry, "documents_dropped": stats.get(f"{CONTAMINATION_PREFIX}{path}/documents", 0)}
                for path, entry in static["decontamination"]["files"].items()}},
        "counts": {k: v for k, v in stats.items()
                   if not k.startswith((REJECTED_REASON_PREFIX, SOURCE_PREFIX, SPLIT_PREFIX, CONTAMINATION_PREFIX)
                                       + HISTOGRAM_PREFIXES)
                   and k not in ("records_read", "records_rejected", "records_in_error", INPUT_FINGERPRINT)},
        "measured": summarize(stats),
    })
    return metadata


class _WriteMetadataFn(beam.DoFn):
    def __init__(self, output_dir: str, static: dict, max_error_fraction: float, planned_inputs: dict,
                 run_id: Optional[str]):
        self._output_dir = output_dir
        self._static = static
        self._max_error_fraction = max_error_fraction
        self._planned_inputs = planned_inputs
        self._run_id = run_id

    def process(self, _, stats: dict, shards: list, error_shards: list, eval_sets: list):
        check_inputs_as_planned(self._planned_inputs, stats)
        check_shards(self._static.get("shards", {}), shards, output_formats(self._static))
        check_complete(stats, self._max_error_fraction, FileSystems.join(self._output_dir, ERRORS_DIR),
                       self._static.get("input_bytes", 0))
        metadata = dataset_metadata(self._static, stats, self._output_dir, shards, error_shards)
        if eval_sets:
            metadata["eval"] = {task: {"path": f"{EVAL_DIR}/{task}.jsonl", "problems": count}
                                for task, count in sorted(eval_sets)}
        check_lock_holder(self._output_dir, self._run_id)
        path = FileSystems.join(self._output_dir, METADATA_FILE)
        content = json.dumps(metadata, indent=2, sort_keys=True).encode() + b"\n"
        write_atomically(path, lambda f: f.write(content), mime_type="application/json")
        logger.info("wrote %s", path)
        yield path


class WriteMetadata(beam.PTransform):
    """Writes ``OUTPUT/metadata.json`` once ``shards`` and ``error_shards`` are complete.

    In: the merged statistics (one dict) as the input; ``ShardInfo``s of the
    dataset and of the dead letters, and ``(task, problems)`` of the
    evaluation sets, as side inputs. Out: the metadata path.
    Fails the pipeline instead, writing nothing, when the files read are not
    the ``planned_inputs`` (``transforms.match.input_stats``), a record is
    unaccounted for, too many records were rejected, or (given ``run_id``)
    the run no longer holds the output's lock. The run's last step, given
    ``run_id``, releases that lock: a job that runs on after its launcher
    has returned (Dataflow) releases it when the dataset is complete.
    """

    def __init__(self, output_dir: str, static: dict, max_error_fraction: float, shards, error_shards,
                 planned_inputs: dict, run_id: Optional[str] = None, eval_sets=None):
        super().__init__()
        self._fn = _WriteMetadataFn(output_dir, static, max_error_fraction, planned_inputs, run_id)
        self._shards = shards
        self._error_shards = error_shards
        self._eval_sets = eval_sets
        self._output_dir = output_dir
        self._run_id = run_id

    def expand(self, stats):
        eval_sets = self._eval_sets
        if eval_sets is None:
            eval_sets = stats.pipeline | "NoEvalSets" >> beam.Create([])
        written = (stats.pipeline
                   | "Trigger" >> beam.Create([None])
                   | "Write" >> beam.ParDo(self._fn, stats=beam.pvalue.AsSingleton(stats),
                                           shards=beam.pvalue.AsList(self._shards),
                                           error_shards=beam.pvalue.AsList(self._error_shards),
                                           eval_sets=beam.pvalue.AsList(eval_sets))
                   .with_output_types(str))
        if self._run_id is None:
            return written
        return written | "ReleaseLock" >> beam.Map(_released, self._output_dir, self._run_id).with_output_types(str)


def _released(metadata_path: str, output_dir: str, run_id: str) -> str:
    release_lock(output_dir, run_id)
    return metadata_path
