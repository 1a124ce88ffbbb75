"""The options of ``fimflow run``, as Beam pipeline options.

``FimflowOptions`` is an ordinary ``PipelineOptions`` view, so the same flags
work on the command line, in a Flex Template and with any runner's options
next to them. ``plan_run`` checks them all before a pipeline exists and turns
them into a ``RunPlan``; every problem is one ``UsageError`` line.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import math
import os
from typing import Optional

from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import (DirectOptions, PipelineOptions, SetupOptions, StandardOptions,
                                                  WorkerOptions)

from pipeline import defaults
from transforms.beam_workarounds import connect_anonymously_to_emulator
from transforms.core.contamination import BenchmarkError, BenchmarkIndex, benchmark_texts
from transforms.core.fim_format import DEFAULT_FORMAT, FORMATS, FimFormat, fim_format
from transforms.core.fim_format import special_token_names as format_token_names
from transforms.core.tokenizer import (ROLE_FLAGS, SpecialTokenNames, Tokenizer, TokenizerError, model_bos_piece,
                                       read_model_bytes)
from transforms.decontaminate import read_benchmark
from transforms.match import is_local_directory, match_pattern
from transforms.read import COMPRESSION_SUFFIXES, DEFAULT_SPLIT_BYTES, PARQUET_SUFFIXES, splittable
from transforms.schema import (DEDUP_MODES, FIM_LEVELS, GROUPINGS, METADATA_FILE, SPAN_UNITS, TRIM_POLICIES, FimConfig,
                               InputFile, InputSelection)

# Three sentinels and <eot> must fit with room for text.
MIN_CONTEXT_LENGTH = 8
# A shard is one shuffle bucket, sorted and packed in one worker's memory and written by it: shards
# of at most this much input text...
MAX_SHARD_INPUT_BYTES = 256 << 20
# ...and, below that, as many as WIDE_SHARDS of at least this much, so the stages after the shuffle
# run as wide as a large machine's cores (each shard's last context is short: 0.2% padding at 2 MB).
MIN_SHARD_INPUT_BYTES = 2 << 20
WIDE_SHARDS = 64
MIN_SPLIT_BYTES = 1 << 20
COMPRESSED_SIZE_FACTOR = 4
# A local run that names no running mode runs in one process (the in-process runner, tokenizing
# spread over helper processes) below this much text, and with one SDK worker process per core
# from it up, where the workers' start-up repays itself. On 2 cores (bench/throughput.py), worker
# processes took 1.4x longer than one process at 3 MB of code, as long at 15 MB, and 0.7x at
# 30 MB; on a 16-core machine, 0.72x at 160 MB before the stages after the shuffle were widened.
LOCAL_WORKERS_MIN_TEXT_BYTES = 16 << 20
LOCAL_MODE_FLAGS = ("--direct_running_mode", "--direct_num_workers")
# Peak RSS summed over a local run's processes, rounded up from bench/throughput.py --scaling (with
# pipeline.memory's malloc settings): a fixed part, a part per SDK worker process or tokenizer helper
# (each holds a model, word caches and one shard's data), and a part per byte of text (the shuffle's
# compressed ids, held by the runner; about 1 byte per byte measured).
LOCAL_BASE_MEMORY_BYTES = 300 << 20
LOCAL_WORKER_MEMORY_BYTES = 300 << 20
LOCAL_MEMORY_PER_TEXT_BYTE = 2
# Flags of earlier versions, and what replaced them.
REMOVED_OPTIONS = {"--num_buckets": " (merged into --num_shards: each shard is one shuffle bucket)"}
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
logger = logging.getLogger(__name__)


def _parse_bool(value: str) -> bool:
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise ValueError(f"not a boolean: {value!r}")


def expand_output(template: str, now: datetime.datetime) -> str:
    """``{date}``/``{datetime}`` in an output path, so each scheduled run writes a new dataset."""
    return (template.replace("{date}", now.strftime("%Y-%m-%d"))
            .replace("{datetime}", now.strftime("%Y-%m-%dT%H%M%SZ")))


class UsageError(ValueError):
    """A bad option or input, found before the pipeline starts."""


class FimflowOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        add = parser.add_argument
        add("--input", action="append", default=None,
            help="File, directory or glob (local or gs://); repeatable. JSONL (.jsonl/.json/.ndjson, "
                 "optionally .gz/.zst), Parquet, or any other file as one whole document. "
                 "Default: the running Python's standard library sources.")
        add("--include", action="append", default=None,
            help="Keep only matched files whose path matches one of these globs (fnmatch), e.g. '*.py'.")
        add("--exclude", action="append", default=None,
            help="Drop matched files whose path matches one of these globs, e.g. '*/tests/*'.")
        add("--output", default=None,
            help="Output directory (local or gs://); {date} and {datetime} become the launch time (UTC), "
                 "for scheduled runs. Default: ./fimflow_out for the default corpus; required otherwise.")
        add("--tokenizer", default=None,
            help="SentencePiece model (local or gs://). Default: the bundled code tokenizer.")
        add("--context_length", type=int, default=2048, help="Tokens per example.")
        add("--fim_rate", type=float, default=0.5, help="Probability that a fragment becomes a FIM example.")
        add("--fim_spm_rate", type=float, default=None,
            help="Probability that a FIM example uses SPM order (default: the format's: 0.5 for paper and "
                 "codellama, 0 for codegemma; codestral has one order).")
        add("--fim_span_unit", choices=SPAN_UNITS, default="char",
            help="Where cut points may fall: any character (the paper), line starts, or token boundaries.")
        add("--fim_level", choices=FIM_LEVELS, default="context",
            help="context: FIM per fragment after packing (the paper's method); document: FIM on whole "
                 "documents before packing, for ablations (cut examples are counted).")
        add("--fim_trim", choices=TRIM_POLICIES, default="paper",
            help="paper: cut the context at context_length even inside a FIM example; "
                 "keep_middle: leave a fragment plain when its FIM form would not fit.")
        add("--fim_max_middle_tokens", type=int, default=0, help="Cap on middle length in tokens (0: none).")
        add("--fim_min_fragment_tokens", type=int, default=0,
            help="Fragments shorter than this are never transformed.")
        add("--seed", type=int, default=0, help="Seed of the shuffle and of FIM.")
        add("--text_field", default="content", help="JSONL field / Parquet column holding the text.")
        add("--id_field", default=None, help="JSONL field / Parquet column carried into error records.")
        add("--language_field", default=None,
            help="JSONL field / Parquet column naming each record's language, for the statistics per "
                 "language in metadata.json; whole files are named by their extension.")
        add("--num_shards", type=int, default=0,
            help="Output TFRecord shards of the training split; each is one shuffle bucket, packed and "
                 "written by one worker, so also the parallel width after the shuffle (0: from the input "
                 "size, see README: Scale).")
        add("--max_file_bytes", type=int, default=10 << 20,
            help="Plain source files larger than this are rejected.")
        add("--read_split_bytes", type=int, default=0,
            help="Uncompressed JSONL files larger than this are read in byte ranges of this size, in "
                 "parallel; compressed and Parquet files are read whole, one worker per file (0: the "
                 "input size over 64, between 1 and 64 MiB).")
        add("--max_error_fraction", type=float, default=0.01,
            help="Above this share of rejected records the run fails and writes no metadata.json.")
        # Also --overwrite=true/false: Flex Templates pass every parameter with a value.
        add("--overwrite", nargs="?", const=True, default=False, type=_parse_bool,
            help="Replace a complete dataset at --output. The earlier dataset is deleted before the new run "
                 "starts: a failed or interrupted run leaves neither.")
        add("--word_cache", nargs="?", const=True, default=True, type=_parse_bool,
            help="Encode through a cache of word encodings, and re-encode only the words at FIM cuts, "
                 "where the tokenizer's vocabulary proves it exact; false encodes every text whole "
                 "(the reference: same bytes, slower).")
        add("--tokenizer_processes", type=int, default=0,
            help="Processes that share each batch of documents to encode (0: every core for the "
                 "in-process DirectRunner, else 1, since other runners already run one worker per core).")
        add("--tokenizer_threads", type=int, default=0,
            help="SentencePiece threads per batch in each of those processes (0: the cores left per "
                 "process for the in-process DirectRunner, else 1).")
        add("--fim_format", choices=tuple(FORMATS), default=DEFAULT_FORMAT,
            help="FIM layout of the model family the data is for: its sentinel pieces, the order of "
                 "prefix, suffix and middle, BOS and SPM defaults (README: FIM formats). The piece flags "
                 "below override the preset's names.")
        add("--bos", nargs="?", const=True, default=None, type=_parse_bool,
            help="Start each document with the model's BOS piece (counted in its segment; a FIM example "
                 "keeps it in front). Default: the format's (on for codellama, codestral, codegemma).")
        add("--fim_prefix_token", default=None, help="Piece that marks the prefix (default: the format's).")
        add("--fim_middle_token", default=None, help="Piece before the middle (default: the format's).")
        add("--fim_suffix_token", default=None, help="Piece that marks the suffix (default: the format's).")
        add("--fim_end_token", default=None,
            help="Piece after the middle, for formats that end it with its own piece (default: the format's).")
        add("--bos_token", default=None, help="Piece that --bos puts first (default: the model's BOS).")
        add("--pad_token", default=None,
            help="Piece filling the tail of the last example of each bucket: any piece, since padding is "
                 "marked by segment_ids == 0 (default: <fim_pad> for the paper format, else the eot piece).")
        add("--eot_token", default=None, help="Piece ending each document (default: the model's EOS).")
        add("--validation_fraction", type=float, default=0.0,
            help="Share of documents (repositories with --group_by repo) held out as validation, chosen by a "
                 "hash of each one's content (name) that --seed does not change; written as validation-*.")
        add("--test_fraction", type=float, default=0.0, help="Share held out as test, chosen the same way.")
        add("--heldout_fim_rate", type=float, default=None,
            help="FIM rate of the held-out splits. Default: two copies of each, one at --fim_rate "
                 "(validation-*, for FIM loss) and one without FIM (validation_ar-*, for autoregressive loss).")
        add("--eval_examples_per_task", type=int, default=100,
            help="Infilling problems per task (single_line, multi_line, random_span) written to eval/ from "
                 "held-out documents (test if there is a test split, else validation); 0: none.")
        add("--decontaminate", action="append", default=None,
            help="JSONL (every string field) or plain file of benchmark prompts and solutions; repeatable. "
                 "Documents sharing a --decontaminate_ngram-word sequence with one are dropped as dead "
                 "letters (reason contaminated) and counted per file.")
        add("--decontaminate_ngram", type=int, default=10,
            help="Length, in whitespace-separated words, of the sequences --decontaminate matches.")
        add("--dedup", choices=DEDUP_MODES, default="exact",
            help="exact: keep one copy of each set of identical documents (repository parts with --group_by "
                 "repo), counted in metadata.json; none: keep every copy.")
        add("--group_by", choices=GROUPINGS, default="none",
            help="repo: repository-level packing. The files of a repository stay together, in path order, "
                 "as <repo_name>NAME<file_sep>PATH\\nCODE<file_sep>...; FIM cuts inside one file's content. "
                 "Repositories are named by --repo_field/--path_field in JSONL and Parquet, by the first "
                 "folder under the --input folder for source trees.")
        add("--repo_field", default="repo_name", help="JSONL field / Parquet column naming the repository.")
        add("--path_field", default="path", help="JSONL field / Parquet column holding the file's path.")
        add("--repo_name_token", default=None,
            help="Piece before a repository's name (default: the format's, else <repo_name>).")
        add("--file_sep_token", default=None,
            help="Piece before each file of a repository (default: the format's, else <file_sep>).")
        add("--memory_check", nargs="?", const=True, default=True, type=_parse_bool,
            help="Refuse a local run whose corpus would need more memory than this machine has available "
                 f"({LOCAL_BASE_MEMORY_BYTES >> 20} MB, {LOCAL_WORKER_MEMORY_BYTES >> 20} MB per worker or "
                 f"helper process, {LOCAL_MEMORY_PER_TEXT_BYTE} bytes per byte of text): it would swap "
                 "or be killed hours in. "
                 "false: try anyway.")
        add("--wait", nargs="?", const=True, default=False, type=_parse_bool,
            help="On a remote runner (Dataflow), wait for the job to finish and print the summary; by "
                 "default fimflow submits the job, prints its id and console link, and returns. Local runs "
                 "always wait.")
        add("--quiet", nargs="?", const=True, default=False, type=_parse_bool,
            help="No progress line during a local run (on a terminal a live line, otherwise a log line "
                 "every 10 s with the stage, share done, documents, tokens, examples, MB/s and ETA).")
        add("--log_level", choices=LOG_LEVELS, default="INFO",
            help="Least severe of fimflow's own log messages shown on stderr; DEBUG adds each shard "
                 "written and the full cause of a failure.")


@dataclasses.dataclass(frozen=True)
class RunPlan:
    """Everything the pipeline needs, resolved and checked.

    ``files``: what the launcher matched, to plan with; the job holds only
    ``selection`` and the workers match it again (``transforms.match``).
    """

    selection: InputSelection
    files: list[InputFile]
    input_bytes: int
    output: str
    tokenizer_path: str
    tokenizer: Tokenizer
    fim: FimConfig
    seed: int
    num_shards: int
    text_field: str
    id_field: Optional[str]
    language_field: Optional[str]
    # With --group_by repo: the (repository, path) fields of JSONL and Parquet records.
    repository: Optional[tuple]
    dedup: bool
    # Held-out shares; each held-out copy's name suffix and FIM rate ({"": --fim_rate, "_ar": 0.0}).
    validation_fraction: float
    test_fraction: float
    heldout_rates: dict
    eval_examples_per_task: int
    # --decontaminate: ((path, sha256), ...), the n-gram length, and each file's n-gram count.
    contamination: tuple
    contamination_ngram: int
    contamination_ngrams: dict
    max_file_bytes: int
    split_bytes: int
    # Whether documents go through a Reshuffle after reading (``transforms.read.ReadDocuments``).
    respread: bool
    max_error_fraction: float
    tokenizer_processes: int
    tokenizer_threads: int
    word_cache: bool
    options: dict


def is_direct(options: PipelineOptions) -> bool:
    """Whether the run is local on Beam's Python runner: no ``--runner``, ``DirectRunner`` or ``FnApiRunner``."""
    return options.view_as(StandardOptions).runner in (None, "DirectRunner", "direct", "FnApiRunner")


def _runs_in_one_process(options: PipelineOptions) -> bool:
    return is_direct(options) and options.view_as(DirectOptions).direct_running_mode == "in_memory"


def available_cores() -> int:
    """Cores this process may run on: its CPU affinity where the system has one (``taskset`` and
    container limits narrow it), else every core."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # Not Linux.
        return os.cpu_count() or 1


def local_worker_processes(options: PipelineOptions) -> int:
    """SDK worker processes of a local run: 0 in one process, else ``--direct_num_workers`` (0: every core)."""
    if _runs_in_one_process(options):
        return 0
    return options.view_as(DirectOptions).direct_num_workers or available_cores()


def choose_local_mode(options: PipelineOptions, text_bytes: int, available: Optional[int]) -> None:
    """For a local run that names no running mode: one SDK worker process per core, as many as
    ``available`` memory holds, from ``LOCAL_WORKERS_MIN_TEXT_BYTES`` of text up on a machine with
    several cores; else the run stays in one process. Which changes no byte of the output."""
    workers = available_cores() if text_bytes >= LOCAL_WORKERS_MIN_TEXT_BYTES else 0
    if available is not None:
        workers = min(workers, (available - local_memory_need(text_bytes, 0)) // LOCAL_WORKER_MEMORY_BYTES)
    if workers >= 2:
        direct = options.view_as(DirectOptions)
        direct.direct_running_mode = "multi_processing"
        direct.direct_num_workers = int(workers)


def default_tokenizer_processes(options: PipelineOptions) -> int:
    """Every core where one process runs the whole pipeline, one process elsewhere."""
    return available_cores() if _runs_in_one_process(options) else 1


def default_tokenizer_threads(options: PipelineOptions, processes: int) -> int:
    """The cores left per tokenizing process where one process runs the whole pipeline, one thread elsewhere."""
    return max(1, available_cores() // processes) if _runs_in_one_process(options) else 1


class _FlagCollector:
    """Stands in for the parser in ``PipelineOptions._add_argparse_args``: records each flag and its settings.

    ``_add_argparse_args`` is how every options class, Beam's and fimflow's,
    declares its flags; collecting them lets fimflow check a command line
    without parsing it the way Beam does, which drops what it does not know.
    """

    def __init__(self):
        self.flags: dict = {}

    def add_argument(self, *names, **settings):
        for name in names:
            self.flags[name] = settings

    add_value_provider_argument = add_argument


def _options_classes(cls=PipelineOptions):
    for sub in cls.__subclasses__():
        yield sub
        yield from _options_classes(sub)


def declared_flags(classes=None) -> dict:
    """``--flag`` -> its argparse settings, for every flag the options classes declare."""
    collector = _FlagCollector()
    for cls in (classes or set(_options_classes())):
        cls._add_argparse_args(collector)
    return collector.flags


def _takes_value(settings: dict) -> Optional[bool]:
    """True: the flag needs a value; None: a value is optional; False: it takes none."""
    if settings.get("action") in ("store_true", "store_false", "store_const", "append_const", "count"):
        return False
    return None if settings.get("nargs") == "?" else True


def _check_value(name: str, value: str, settings: dict) -> None:
    """Raises ``UsageError`` (one line) for a value argparse would refuse with the whole usage text."""
    convert = settings.get("type")
    if convert is not None:
        try:
            value = convert(value)
        except (TypeError, ValueError):
            kind = {int: "a whole number", float: "a number", _parse_bool: "true or false"}.get(convert, "valid")
            raise UsageError(f"{name} {value!r}: not {kind}") from None
    choices = settings.get("choices")
    if choices and value not in choices:
        raise UsageError(f"{name} {value!r}: choose one of {', '.join(map(str, choices))}")


def checked_argv(argv: list[str]) -> list[str]:
    """``argv`` with dashed spellings of known flags (``--context-length``) in their declared form.

    Raises ``UsageError`` for a flag that no options class declares, a value
    its flag refuses, or a stray argument: Beam would drop unknown flags with
    a log line, and the run would go on with the defaults the user meant to
    change; argparse would print its whole usage text for a bad value.
    """
    flags = declared_flags()
    checked, i = [], 0
    while i < len(argv):
        token = argv[i]
        name, equals, value = token.partition("=")
        if not token.startswith("-") or token == "--":
            raise UsageError(f"unexpected argument {token!r}: every option is --name value or --name=value")
        if name not in flags and "--" + name.lstrip("-").replace("-", "_") in flags:
            name = "--" + name.lstrip("-").replace("-", "_")
        if name not in flags:
            raise UsageError(f"unknown option {name}{REMOVED_OPTIONS.get(name, '')} (see fimflow run --help)")
        checked.append(name + equals + value)
        takes = _takes_value(flags[name])
        if not equals and i + 1 < len(argv) and (takes or (takes is None and not argv[i + 1].startswith("-"))):
            value = argv[i + 1]
            checked.append(value)
            equals = "="
            i += 1
        if equals and takes is not False:
            _check_value(name, value, flags[name])
        i += 1
    return checked


def unknown_options(options: PipelineOptions) -> list[str]:
    known = options.get_all_options(retain_unknown_options=False)
    every = options.get_all_options(retain_unknown_options=True)
    return sorted(k for k in every if k not in known)


def resolve_inputs(patterns, include: Optional[list] = None, exclude: Optional[list] = None) -> list[InputFile]:
    """The files the patterns select (``transforms.match``), sorted by path; a pattern left
    with no file is an error."""
    selection = InputSelection(tuple(patterns), tuple(include or ()), tuple(exclude or ()))
    files: dict = {}
    for pattern in selection.patterns:
        try:
            matched, found = match_pattern(pattern, selection)
        except Exception as e:  # Beam raises BeamIOError with per-pattern causes.
            raise UsageError(f"--input {pattern}: {e}") from e
        if not matched:
            raise UsageError(f"--input {pattern}: no file matched (after --include/--exclude)"
                             if found else f"--input {pattern}: no file matched")
        files.update((f.path, f) for f in matched)
    return [files[path] for path in sorted(files)]


def available_memory() -> Optional[int]:
    """Memory this machine can give a new run without swapping (Linux ``MemAvailable``), or None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def default_num_shards(text_bytes: int) -> int:
    """Shards (shuffle buckets) for ``text_bytes`` of text: from the input size alone, never the worker
    count, so the bytes written are the same on every runner; up to ``WIDE_SHARDS`` of at least
    ``MIN_SHARD_INPUT_BYTES``, more once they would exceed ``MAX_SHARD_INPUT_BYTES``."""
    return max(1, math.ceil(text_bytes / MAX_SHARD_INPUT_BYTES),
               min(WIDE_SHARDS, text_bytes // MIN_SHARD_INPUT_BYTES))


def default_split_bytes(input_bytes: int) -> int:
    """Byte ranges in which large uncompressed JSONL files are read: about ``WIDE_SHARDS`` of them over the
    input, each between ``MIN_SPLIT_BYTES`` and ``DEFAULT_SPLIT_BYTES``. Which worker reads which range
    changes no byte of the output (``transforms.read``)."""
    return min(DEFAULT_SPLIT_BYTES, max(MIN_SPLIT_BYTES, input_bytes // WIDE_SHARDS))


def needs_respread(files: list[InputFile], one_process: bool) -> bool:
    """Whether a file read whole (compressed, Parquet) holds more text than the largest range, on a runner
    with more than one worker: only then does tokenizing it on every worker repay a shuffle of text."""
    return not one_process and any(not splittable(f.path) and _estimated_text_bytes([f]) > DEFAULT_SPLIT_BYTES
                                   for f in files)


def local_memory_need(text_bytes: int, workers: int) -> int:
    """Peak memory of a local run of ``text_bytes`` of text with ``workers`` SDK worker processes."""
    return LOCAL_BASE_MEMORY_BYTES + workers * LOCAL_WORKER_MEMORY_BYTES + LOCAL_MEMORY_PER_TEXT_BYTE * text_bytes


def check_local_memory(text_bytes: int, available: Optional[int], workers: int = 0) -> None:
    """Raises ``UsageError`` when a local run of ``text_bytes`` with ``workers`` worker or helper processes
    would not fit in ``available`` memory (None: unknown, or not checked)."""
    need = local_memory_need(text_bytes, workers)
    if available is None or need <= available:
        return
    fits = max(0, (available - local_memory_need(0, workers)) // LOCAL_MEMORY_PER_TEXT_BYTE)
    processes = f" with {workers + 1} processes" if workers else ""
    raise UsageError(
        f"about {text_bytes / 1e6:,.0f} MB of text needs about {need / 1e9:.1f} GB of memory on the local runner"
        f"{processes} ({LOCAL_MEMORY_PER_TEXT_BYTE} bytes per byte of text), and {available / 1e9:.1f} GB is "
        f"available: run it on Dataflow (deploy/README.md), or locally in parts of at most {fits / 1e6:,.0f} MB "
        "of text (--include/--exclude), or pass --memory_check=false to try anyway")


def _estimated_text_bytes(files: list[InputFile]) -> int:
    def text_bytes(file: InputFile):
        compressed = file.path.lower().endswith(COMPRESSION_SUFFIXES + PARQUET_SUFFIXES)
        return file.size * (COMPRESSED_SIZE_FACTOR if compressed else 1)
    return sum(map(text_bytes, files))


def recorded_options(options: PipelineOptions) -> dict:
    """What ``metadata.json`` records of the run's options: fimflow's own and the runner, nothing else.

    Beam's options may hold secrets (``--s3_secret_access_key``, tokens in
    URLs), so none of them is written.
    """
    o = options.view_as(FimflowOptions)
    dests = {settings.get("dest") or name.lstrip("-") for name, settings in declared_flags([FimflowOptions]).items()}
    return {"runner": options.view_as(StandardOptions).runner or "DirectRunner",
            **{dest: getattr(o, dest) for dest in sorted(dests)}}


def check_no_dataset(output: str, overwrite: bool) -> None:
    """Raises ``UsageError`` if ``output`` holds a complete dataset and ``overwrite`` is off."""
    _check(overwrite or not FileSystems.exists(FileSystems.join(output, METADATA_FILE)),
           f"--output {output} already holds a complete dataset ({METADATA_FILE}); "
           "pass --overwrite to replace it or choose another --output")


def _inside(path: str, directory: str) -> bool:
    if "://" not in path and "://" not in directory:
        path, directory = os.path.realpath(path), os.path.realpath(directory)
    return path == directory.rstrip("/") or path.startswith(directory.rstrip("/") + "/")


def check_output_outside_inputs(output: str, patterns: list[str], files: list[InputFile]) -> None:
    """Raises ``UsageError`` if the run would read its own output, now or on a rerun.

    A directory input (or a ``**`` glob) is read recursively, so an output
    inside it would be read as input by the next run; a planned file inside
    the output is read by this one.
    """
    for pattern in patterns:
        wildcard = min((pattern.index(c) for c in "*?[" if c in pattern), default=None)
        recursive = is_local_directory(pattern) or "**" in pattern
        root = pattern if wildcard is None else pattern[:wildcard].rsplit("/", 1)[0]
        _check(not (recursive and _inside(output, root)),
               f"--output {output} is inside --input {pattern}: the run would read its own output")
    inside = [f.path for f in files if _inside(f.path, output)]
    _check(not inside, f"--input matches {len(inside)} file(s) inside --output {output}, e.g. {inside[:1]}")


def _check(condition: bool, message: str):
    if not condition:
        raise UsageError(message)


def check_workers_get_fimflow(options: PipelineOptions) -> None:
    """Raises ``UsageError`` for a Dataflow job whose workers would start on Beam's stock image.

    That image has neither fimflow nor SentencePiece: every worker would fail
    at its first element, after minutes of start-up.
    """
    if options.view_as(StandardOptions).runner not in ("DataflowRunner", "dataflow"):
        return
    workers = options.view_as(WorkerOptions)
    image = workers.sdk_container_image or workers.worker_harness_container_image
    _check(bool(image or options.view_as(SetupOptions).setup_file),
           "--runner DataflowRunner needs --sdk_container_image IMAGE (the image deploy/Dockerfile builds) "
           "or --setup_file ./setup.py: Beam's stock worker image has neither fimflow nor sentencepiece")


def special_token_names(o: FimflowOptions, fmt: FimFormat, model: bytes) -> SpecialTokenNames:
    """The pieces of every special token the run uses: the flags where given, else the format's."""
    bos = o.bos if o.bos is not None else fmt.bos
    overrides = {role: getattr(o, flag) for role, flag in ROLE_FLAGS.items()}
    return format_token_names(fmt, overrides, (o.bos_token or model_bos_piece(model)) if bos else None,
                              repository=o.group_by == "repo")


def check_benchmarks(paths: list[str], n: int) -> tuple[list, dict]:
    """``[(path, sha256)]`` of the ``--decontaminate`` files, read and indexed here so that a bad one
    stops the run before it starts, and each file's count of distinct ``n``-grams."""
    files, texts = [], []
    for path in paths:
        try:
            data, sha256 = read_benchmark(path)
            texts.append((path, benchmark_texts(path, data)))
        except BenchmarkError as e:
            raise UsageError(f"--decontaminate {e}") from e
        except Exception as e:
            raise UsageError(f"--decontaminate {path}: cannot read it ({e})") from e
        files.append((path, sha256))
    counts = BenchmarkIndex(texts, n).ngram_counts()
    for path, count in counts.items():
        _check(count > 0, f"--decontaminate {path}: no text of {n} words or more, so it can match nothing")
    return files, counts


def plan_run(options: PipelineOptions, pick_local_mode: bool = False) -> RunPlan:
    """Validates options and inputs; raises ``UsageError`` with one clear line.

    ``pick_local_mode``: the command line named no ``LOCAL_MODE_FLAGS``, so a
    local run's mode may be chosen here (``choose_local_mode``), in ``options``.
    """
    connect_anonymously_to_emulator()
    unknown = unknown_options(options)
    _check(not unknown, f"unknown option(s): {', '.join('--' + u for u in unknown)}")
    check_workers_get_fimflow(options)
    o = options.view_as(FimflowOptions)
    _check(o.context_length >= MIN_CONTEXT_LENGTH,
           f"--context_length={o.context_length} is too small: at least {MIN_CONTEXT_LENGTH} "
           "(three FIM sentinels, <eot> and text must fit)")
    fmt = fim_format(o.fim_format)
    spm_rate = fmt.spm_rate if o.fim_spm_rate is None else o.fim_spm_rate
    for name, value in (("fim_rate", o.fim_rate), ("fim_spm_rate", spm_rate),
                        ("max_error_fraction", o.max_error_fraction), ("validation_fraction", o.validation_fraction),
                        ("test_fraction", o.test_fraction),
                        ("heldout_fim_rate", 0.0 if o.heldout_fim_rate is None else o.heldout_fim_rate)):
        _check(0.0 <= value <= 1.0, f"--{name}={value} must be between 0 and 1")
    _check(o.validation_fraction + o.test_fraction < 1.0,
           "--validation_fraction plus --test_fraction must leave documents for training")
    _check(o.decontaminate_ngram >= 1, "--decontaminate_ngram must be at least 1")
    _check(len(fmt.orders) > 1 or spm_rate == fmt.spm_rate,
           f"--fim_spm_rate={spm_rate}: the {fmt.name} format has one order only ({fmt.layout_text('spm')})")
    if o.group_by == "repo":
        _check(o.fim_level == "context" and o.fim_trim == "paper",
               "--group_by repo applies FIM after packing (--fim_level context) and keeps files whole "
               "(--fim_trim paper): the other settings would cut a repository's later files")
    _check(fmt.pieces.get("fim_middle") or o.fim_middle_token is None,
           f"--fim_middle_token: the {fmt.name} format has no middle sentinel ({fmt.layout_text('spm')})")
    _check(o.read_split_bytes == 0 or o.read_split_bytes >= MIN_SPLIT_BYTES,
           f"--read_split_bytes={o.read_split_bytes} must be at least 1 MiB")
    for name in ("num_shards", "fim_max_middle_tokens", "fim_min_fragment_tokens",
                 "tokenizer_processes", "tokenizer_threads", "eval_examples_per_task"):
        _check(getattr(o, name) >= 0, f"--{name} must not be negative")
    _check(-(1 << 63) <= o.seed < (1 << 63), f"--seed={o.seed} must fit in 64 bits")
    if o.input:
        _check(o.output is not None, "--output is required with --input")
        selection = InputSelection(tuple(o.input), tuple(o.include or ()), tuple(o.exclude or ()))
    else:
        _check(is_direct(options),
               "--input is required on this runner: the default corpus exists only on this machine")
        selection = defaults.default_corpus()
    files = resolve_inputs(selection.patterns, selection.include, selection.exclude)
    output = expand_output(o.output or defaults.DEFAULT_OUTPUT,
                           datetime.datetime.now(datetime.timezone.utc)).rstrip("/")
    tokenizer_path = o.tokenizer or defaults.bundled_tokenizer_path()
    try:
        model = read_model_bytes(tokenizer_path)
    except Exception as e:
        raise UsageError(f"--tokenizer {tokenizer_path}: cannot read it ({e})") from e
    try:
        names = special_token_names(o, fmt, model)
        tokenizer = Tokenizer(model, names, reference=not o.word_cache)
    except TokenizerError as e:
        raise UsageError(f"--tokenizer {tokenizer_path}: {e}") from e
    except Exception as e:  # SentencePiece refuses non-models with a RuntimeError.
        raise UsageError(f"--tokenizer {tokenizer_path}: not a SentencePiece model ({e})") from e
    benchmarks, benchmark_ngrams = check_benchmarks(o.decontaminate or [], o.decontaminate_ngram)
    check_output_outside_inputs(output, o.input or [], files)
    text_bytes = _estimated_text_bytes(files)
    available = available_memory() if is_direct(options) and o.memory_check else None
    if is_direct(options) and pick_local_mode:
        choose_local_mode(options, text_bytes, available)
    processes = o.tokenizer_processes or default_tokenizer_processes(options)
    if not o.tokenizer_processes and available is not None and _runs_in_one_process(options):
        # No more helpers than the memory holds; one process always tries.
        processes = int(max(1, min(processes, 1 + (available - local_memory_need(text_bytes, 0))
                                   // LOCAL_WORKER_MEMORY_BYTES)))
    # Each SDK worker, or each tokenizer helper of a run in one process, holds a model and word caches.
    check_local_memory(text_bytes, available, local_worker_processes(options) or processes - 1)
    split_bytes = o.read_split_bytes or default_split_bytes(sum(f.size for f in files))
    return RunPlan(
        selection=selection,
        files=files,
        input_bytes=sum(f.size for f in files),
        output=output,
        tokenizer_path=tokenizer_path,
        tokenizer=tokenizer,
        fim=FimConfig(o.context_length, o.fim_rate, spm_rate, o.fim_span_unit, o.fim_trim,
                      o.fim_max_middle_tokens, o.fim_min_fragment_tokens, o.fim_level, fmt.name),
        seed=o.seed,
        num_shards=o.num_shards or default_num_shards(text_bytes),
        text_field=o.text_field,
        id_field=o.id_field,
        language_field=o.language_field,
        repository=(o.repo_field, o.path_field) if o.group_by == "repo" else None,
        dedup=o.dedup == "exact",
        validation_fraction=o.validation_fraction,
        test_fraction=o.test_fraction,
        heldout_rates=({"": o.fim_rate, "_ar": 0.0} if o.heldout_fim_rate is None else {"": o.heldout_fim_rate}),
        eval_examples_per_task=o.eval_examples_per_task,
        contamination=tuple(benchmarks),
        contamination_ngram=o.decontaminate_ngram,
        contamination_ngrams=benchmark_ngrams,
        max_file_bytes=o.max_file_bytes,
        split_bytes=split_bytes,
        respread=needs_respread(files, _runs_in_one_process(options)),
        max_error_fraction=o.max_error_fraction,
        tokenizer_processes=processes,
        tokenizer_threads=o.tokenizer_threads or default_tokenizer_threads(options, processes),
        word_cache=o.word_cache,
        options=recorded_options(options),
    )
