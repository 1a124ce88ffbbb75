"""``plan_run``: a command line's options, checked and resolved into one ``RunPlan``.

``plan_run`` reads the options, the inputs, the tokenizer and the machine
(a ``pipeline.machine.Machine`` value) and changes none of them: what it
decides, such as a local run's worker processes, is in the plan, and the CLI
and ``pipeline.build`` read only the plan. Every problem is one
``UsageError`` line (``pipeline.flags``).
"""

from __future__ import annotations

import dataclasses
import datetime
import math
from typing import Optional

from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

from pipeline import defaults
from pipeline.argv import declared_flags, unknown_options
from pipeline.checks import (check, check_benchmarks, check_local_memory, check_output_outside_inputs,
                             check_workers_get_fimflow)
from pipeline.extras import require_extra
from pipeline.flags import ROLE_FLAGS, FimflowOptions, UsageError, tokenizer_problem
from pipeline.machine import Machine
from transforms.core.fim_format import SENTINEL_ROLES, FimFormat, fim_format
from transforms.core.fim_format import special_token_names as format_token_names
from transforms.core.splits import AUTOREGRESSIVE_SUFFIX, TEST, TRAIN, VALIDATION
from transforms.core.tokenizer import (SpecialTokenNames, Tokenizer, TokenizerError, default_bos_piece,
                                       read_model_bytes, tokenizer_from_bytes)
from transforms.match import match_pattern
from transforms.read import COMPRESSION_SUFFIXES, DEFAULT_SPLIT_BYTES, PARQUET_SUFFIXES, splittable
from transforms.schema import FimConfig, InputFile, InputSelection
from transforms.sinks import DEFAULT_OUTPUT_FORMAT, output_sink

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
# Re-encoding a file's prefix, middle and suffix apart can take a few ids more than the file had.
REENCODING_SLACK = 4


def expand_output(template: str, now: datetime.datetime) -> str:
    """``{date}``/``{datetime}`` in an output path, so each scheduled run writes a new dataset."""
    return (template.replace("{date}", now.strftime("%Y-%m-%d"))
            .replace("{datetime}", now.strftime("%Y-%m-%dT%H%M%SZ")))


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
    # --dedup near: (threshold, ngram), and where to log what it removed.
    near_dedup: Optional[tuple]
    dedup_log: Optional[str]
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
    # The formats each shard is written in (``transforms.sinks.OUTPUT_FORMATS``), the first counted.
    output_formats: tuple
    tokenizer_processes: int
    tokenizer_threads: int
    word_cache: bool
    options: dict
    # Where and how it runs: locally on Beam's Python runner or not; a local run's SDK worker processes
    # (0: one process); Beam flags fimflow adds for the runner (the running mode it picked, if any).
    local: bool = True
    local_workers: int = 0
    runner_flags: tuple = ()
    overwrite: bool = False
    wait: bool = False
    quiet: bool = False
    log_level: str = "INFO"

    @property
    def heldout_splits(self) -> list[str]:
        """The held-out splits this run writes."""
        return [split for split, fraction in ((VALIDATION, self.validation_fraction), (TEST, self.test_fraction))
                if fraction > 0]

    def split_num_shards(self, split: str) -> int:
        """Shards, so shuffle buckets, of a split: the plan's for training, a held-out split's share of them."""
        if split == TRAIN:
            return self.num_shards
        fraction = self.validation_fraction if split == VALIDATION else self.test_fraction
        return max(1, math.ceil(self.num_shards * fraction))

    @property
    def shards(self) -> dict:
        """Every file prefix of examples and its shard count: metadata.json is written only when exactly
        these exist."""
        return {TRAIN: self.num_shards, **{split + suffix: self.split_num_shards(split)
                                           for split in self.heldout_splits for suffix in self.heldout_rates}}

    @property
    def repository_reserve(self) -> int:
        """Ids kept free beside each repository part: the sentinels FIM adds to one file, and slack."""
        return REENCODING_SLACK + max(sum(item in SENTINEL_ROLES for item in layout)
                                      for layout in fim_format(self.fim.format).orders.values())

    @property
    def repository_budget(self) -> int:
        """Ids per repository part: a context less its ``<eot>`` and the reserve."""
        return self.fim.context_length - 1 - self.repository_reserve


def is_direct(options: PipelineOptions) -> bool:
    """Whether the run is local on Beam's Python runner: no ``--runner``, ``DirectRunner`` or ``FnApiRunner``."""
    return options.view_as(StandardOptions).runner in (None, "DirectRunner", "direct", "FnApiRunner")


def _named_local_workers(options: PipelineOptions, machine: Machine) -> int:
    """SDK worker processes of a local run whose command line named its mode: 0 in one process, else
    ``--direct_num_workers`` (0: every core)."""
    direct = options.view_as(DirectOptions)
    if direct.direct_running_mode == "in_memory":
        return 0
    return direct.direct_num_workers or machine.cores


def _local_mode_flags(workers: int) -> tuple:
    return ("--direct_running_mode=multi_processing", f"--direct_num_workers={workers}") if workers else ()


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


def special_token_names(o: FimflowOptions, fmt: FimFormat, model: bytes) -> SpecialTokenNames:
    """The pieces of every special token the run uses: the flags where given, else the format's."""
    bos = o.bos if o.bos is not None else fmt.bos
    overrides = {role: getattr(o, flag) for role, flag in ROLE_FLAGS.items()}
    return format_token_names(fmt, overrides,
                              (o.bos_token or fmt.pieces.get("bos") or default_bos_piece(model)) if bos else None,
                              repository=o.group_by == "repo")


def plan_run(options: PipelineOptions, pick_local_mode: bool = False, machine: Optional[Machine] = None) -> RunPlan:
    """Validates ``options`` and the inputs and resolves them into a ``RunPlan``; raises ``UsageError`` with one
    clear line. Changes nothing it is given.

    ``pick_local_mode``: the command line named no local running mode, so a
    local run's worker processes are chosen here, for ``machine`` (default:
    ``Machine.this()``), and the plan's ``runner_flags`` say them to Beam.
    """
    unknown = unknown_options(options)
    check(not unknown, f"unknown option(s): {', '.join('--' + u for u in unknown)}")
    check_workers_get_fimflow(options)
    o = options.view_as(FimflowOptions)
    check(o.context_length >= MIN_CONTEXT_LENGTH,
          f"--context_length={o.context_length} is too small: at least {MIN_CONTEXT_LENGTH} "
          "(three FIM sentinels, <eot> and text must fit)")
    fmt = fim_format(o.fim_format)
    spm_rate = fmt.spm_rate if o.fim_spm_rate is None else o.fim_spm_rate
    for name, value in (("fim_rate", o.fim_rate), ("fim_spm_rate", spm_rate),
                        ("max_error_fraction", o.max_error_fraction), ("validation_fraction", o.validation_fraction),
                        ("test_fraction", o.test_fraction),
                        ("heldout_fim_rate", 0.0 if o.heldout_fim_rate is None else o.heldout_fim_rate)):
        check(0.0 <= value <= 1.0, f"--{name}={value} must be between 0 and 1")
    check(o.validation_fraction + o.test_fraction < 1.0,
          "--validation_fraction plus --test_fraction must leave documents for training")
    check(o.decontaminate_ngram >= 1, "--decontaminate_ngram must be at least 1")
    check(0.0 < o.near_dedup_threshold <= 1.0, f"--near_dedup_threshold={o.near_dedup_threshold} must be in (0, 1]")
    check(o.near_dedup_ngram >= 1, "--near_dedup_ngram must be at least 1")
    check(o.dedup_log is None or o.dedup == "near", "--dedup_log needs --dedup near")
    check(len(fmt.orders) > 1 or spm_rate == fmt.spm_rate,
          f"--fim_spm_rate={spm_rate}: the {fmt.name} format has one order only ({fmt.layout_text('spm')})")
    if o.group_by == "repo":
        check(o.fim_level == "context" and o.fim_trim == "paper",
              "--group_by repo applies FIM after packing (--fim_level context) and keeps files whole "
              "(--fim_trim paper): the other settings would cut a repository's later files")
    check(fmt.pieces.get("fim_middle") or o.fim_middle_token is None,
          f"--fim_middle_token: the {fmt.name} format has no middle sentinel ({fmt.layout_text('spm')})")
    check(o.read_split_bytes == 0 or o.read_split_bytes >= MIN_SPLIT_BYTES,
          f"--read_split_bytes={o.read_split_bytes} must be at least 1 MiB")
    for name in ("num_shards", "fim_max_middle_tokens", "fim_min_fragment_tokens",
                 "tokenizer_processes", "tokenizer_threads", "eval_examples_per_task"):
        check(getattr(o, name) >= 0, f"--{name} must not be negative")
    check(-(1 << 63) <= o.seed < (1 << 63), f"--seed={o.seed} must fit in 64 bits")
    output_formats = tuple(dict.fromkeys(o.output_format or [DEFAULT_OUTPUT_FORMAT]))
    for name in output_formats:
        if output_sink(name).extra:
            require_extra(output_sink(name).extra)
    local = is_direct(options)
    if o.input:
        check(o.output is not None, "--output is required with --input")
        selection = InputSelection(tuple(o.input), tuple(o.include or ()), tuple(o.exclude or ()))
    else:
        check(local, "--input is required on this runner: the default corpus exists only on this machine")
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
        tokenizer = tokenizer_from_bytes(model, names, reference=not o.word_cache)
    except TokenizerError as e:
        raise tokenizer_problem(tokenizer_path, e) from e
    except Exception as e:  # SentencePiece refuses non-models with a RuntimeError.
        raise UsageError(f"--tokenizer {tokenizer_path}: neither a SentencePiece model nor a tokenizer.json "
                         f"({e})") from e
    benchmarks, benchmark_ngrams = check_benchmarks(o.decontaminate or [], o.decontaminate_ngram)
    check_output_outside_inputs(output, o.input or [], files)
    text_bytes = _estimated_text_bytes(files)
    machine = machine or Machine.this()
    if not (local and o.memory_check):
        machine = machine.unchecked()
    workers = 0
    if local:
        workers = machine.local_workers(text_bytes) if pick_local_mode else _named_local_workers(options, machine)
    one_process = local and workers == 0
    processes, threads = o.tokenizer_processes, o.tokenizer_threads
    if not processes:
        # One process runs every stage in one thread: helpers encode beside it, as many as the memory holds
        # (the DoFn's own process always encodes). Elsewhere the runner already runs a worker per core.
        processes = max(1, 1 + machine.processes_that_fit(text_bytes, machine.cores - 1)) if one_process else 1
    if not threads:
        threads = max(1, machine.cores // processes) if one_process else 1
    # Each SDK worker, or each tokenizer helper of a run in one process, holds a model and word caches.
    check_local_memory(text_bytes, machine, workers or processes - 1)
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
        dedup=o.dedup in ("exact", "near"),
        near_dedup=(o.near_dedup_threshold, o.near_dedup_ngram) if o.dedup == "near" else None,
        dedup_log=o.dedup_log,
        validation_fraction=o.validation_fraction,
        test_fraction=o.test_fraction,
        heldout_rates=({"": o.fim_rate, AUTOREGRESSIVE_SUFFIX: 0.0} if o.heldout_fim_rate is None
                       else {"": o.heldout_fim_rate}),
        eval_examples_per_task=o.eval_examples_per_task,
        contamination=tuple(benchmarks),
        contamination_ngram=o.decontaminate_ngram,
        contamination_ngrams=benchmark_ngrams,
        max_file_bytes=o.max_file_bytes,
        split_bytes=split_bytes,
        respread=needs_respread(files, one_process),
        max_error_fraction=o.max_error_fraction,
        output_formats=output_formats,
        tokenizer_processes=processes,
        tokenizer_threads=threads,
        word_cache=o.word_cache,
        options=recorded_options(options),
        local=local,
        local_workers=workers,
        runner_flags=_local_mode_flags(workers) if local and pick_local_mode else (),
        overwrite=o.overwrite,
        wait=o.wait,
        quiet=o.quiet,
        log_level=o.log_level,
    )
