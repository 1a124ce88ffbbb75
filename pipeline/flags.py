"""The flags of ``fimflow run``, as Beam pipeline options, and the one error every check raises.

``FimflowOptions`` is an ordinary ``PipelineOptions`` view, so the same flags
work on the command line, in a Flex Template and with any runner's options
next to them. Lists of presets in the help come from the preset registry
(``transforms.core.fim_format.FORMATS``), so they cannot go stale.
"""

from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.machine import LOCAL_BASE_MEMORY_BYTES, LOCAL_MEMORY_PER_TEXT_BYTE, LOCAL_WORKER_MEMORY_BYTES
from transforms.core.fim_format import DEFAULT_FORMAT, FORMATS
from transforms.sinks import DEFAULT_OUTPUT_FORMAT, OUTPUT_FORMATS
from transforms.schema import DEDUP_MODES, FIM_LEVELS, GROUPINGS, SPAN_UNITS, TRIM_POLICIES

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class UsageError(ValueError):
    """A bad option or input, found before the pipeline starts: one line for the user."""


# The command-line flag that names each special token.
ROLE_FLAGS = {"pad": "pad_token", "eot": "eot_token", "fim_prefix": "fim_prefix_token",
              "fim_middle": "fim_middle_token", "fim_suffix": "fim_suffix_token", "fim_end": "fim_end_token",
              "bos": "bos_token", "repo_name": "repo_name_token", "file_sep": "file_sep_token"}


def tokenizer_problem(path: str, error: Exception) -> UsageError:
    """A ``TokenizerError`` in command-line words: what is wrong, then the flags that fix it."""
    roles = getattr(error, "roles", ())
    flags = " or ".join(f"--{ROLE_FLAGS[role]}" for role in roles)
    if getattr(error, "missing", False):
        fix = (". Train one with `fimflow train-tokenizer` (it adds them), add them to your tokenizer as special "
               "or control tokens, pick the --fim_format of your model's family, or name existing pieces with "
               f"{flags}")
    else:
        fix = f" (set {flags})" if roles else ""
    return UsageError(f"--tokenizer {path}: {error}{fix}")


def parse_bool(value: str) -> bool:
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise ValueError(f"not a boolean: {value!r}")


def _spm_defaults() -> str:
    """Each preset's default SPM share, for the help."""
    return "; ".join(f"{f.name} {f.spm_rate:g}" if len(f.orders) > 1 else f"{f.name} has one order"
                     for f in FORMATS.values())


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
        add("--output_format", action="append", choices=tuple(OUTPUT_FORMATS), default=None,
            help=f"Format of the examples' shards; repeatable, every format written from the same chunks in "
                 f"the same step ({', '.join(OUTPUT_FORMATS)}; docs/trainers.md says which trainer reads "
                 f"which). Default: {DEFAULT_OUTPUT_FORMAT}.")
        add("--tokenizer", default=None,
            help="SentencePiece .model or Hugging Face tokenizer.json (local, gs://, package://). "
                 "Default: the bundled code tokenizer.")
        add("--context_length", type=int, default=2048, help="Tokens per example.")
        add("--fim_rate", type=float, default=0.5, help="Probability that a fragment becomes a FIM example.")
        add("--fim_spm_rate", type=float, default=None,
            help=f"Probability that a FIM example uses SPM order (default: the format's: {_spm_defaults()}).")
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
            help="Output shards of the training split; each is one shuffle bucket, packed and "
                 "written by one worker, so also the parallel width after the shuffle (0: from the input "
                 "size, see docs/scale.md).")
        add("--max_file_bytes", type=int, default=10 << 20,
            help="Plain source files larger than this are rejected.")
        add("--read_split_bytes", type=int, default=0,
            help="Uncompressed JSONL files larger than this are read in byte ranges of this size, in "
                 "parallel; compressed and Parquet files are read whole, one worker per file (0: the "
                 "input size over 64, between 1 and 64 MiB).")
        add("--max_error_fraction", type=float, default=0.01,
            help="Above this share of rejected records the run fails and writes no metadata.json.")
        # Also --overwrite=true/false: Flex Templates pass every parameter with a value.
        add("--overwrite", nargs="?", const=True, default=False, type=parse_bool,
            help="Replace a complete dataset at --output. The earlier dataset is deleted before the new run "
                 "starts: a failed or interrupted run leaves neither.")
        add("--word_cache", nargs="?", const=True, default=True, type=parse_bool,
            help="Encode through a cache of word encodings, and re-encode only the words at FIM cuts, "
                 "where the tokenizer's vocabulary proves it exact; false encodes every text whole "
                 "(the reference: same bytes, slower).")
        add("--tokenizer_processes", type=int, default=0,
            help="Processes that encode batches of documents and make shards' records, the runner's own and "
                 "helpers (0: every core for the in-process DirectRunner, else 1, since other runners "
                 "already run one worker per core).")
        add("--tokenizer_threads", type=int, default=0,
            help="SentencePiece threads per batch in each of those processes (0: the cores left per "
                 "process for the in-process DirectRunner, else 1).")
        add("--fim_format", choices=tuple(FORMATS), default=DEFAULT_FORMAT,
            help=f"FIM layout of the model family the data is for ({', '.join(FORMATS)}): its sentinel pieces, the order of "
                 "prefix, suffix and middle, BOS and SPM defaults (README: FIM formats). The piece flags "
                 "below override the preset's names.")
        add("--bos", nargs="?", const=True, default=None, type=parse_bool,
            help="Start each document with the model's BOS piece (counted in its segment; a FIM example "
                 f"keeps it in front). Default: the format's (on for {', '.join(f.name for f in FORMATS.values() if f.bos)}).")
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
                 "repo), counted in metadata.json; near: also remove near-duplicates (MinHash + LSH over word "
                 "5-grams, before the split: one survivor per cluster); none: keep every copy.")
        add("--near_dedup_threshold", type=float, default=0.7,
            help="With --dedup near: the estimated Jaccard similarity of word n-grams at which two documents "
                 "are near-duplicates (BigCode's 0.7); the LSH bands are chosen for it.")
        add("--near_dedup_ngram", type=int, default=5,
            help="With --dedup near: words per shingle.")
        add("--dedup_log", default=None,
            help="With --dedup near: write one JSON line per removed document, naming its survivor, to this "
                 "file (local or gs://), sorted by source and position.")
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
        add("--memory_check", nargs="?", const=True, default=True, type=parse_bool,
            help="Refuse a local run whose corpus would need more memory than this machine has available "
                 f"({LOCAL_BASE_MEMORY_BYTES >> 20} MB, {LOCAL_WORKER_MEMORY_BYTES >> 20} MB per worker or "
                 f"helper process, {LOCAL_MEMORY_PER_TEXT_BYTE} bytes per byte of text): it would swap "
                 "or be killed hours in. "
                 "false: try anyway.")
        add("--wait", nargs="?", const=True, default=False, type=parse_bool,
            help="On a remote runner (Dataflow), wait for the job to finish and print the summary; by "
                 "default fimflow submits the job, prints its id and console link, and returns. Local runs "
                 "always wait.")
        add("--quiet", nargs="?", const=True, default=False, type=parse_bool,
            help="No progress line during a local run (on a terminal a live line, otherwise a log line "
                 "every 10 s with the stage, share done, documents, tokens, examples, MB/s and ETA).")
        add("--log_level", choices=LOG_LEVELS, default="INFO",
            help="Least severe of fimflow's own log messages shown on stderr; DEBUG adds each shard "
                 "written and the full cause of a failure.")
