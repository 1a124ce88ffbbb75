"""The ``fimflow`` command: ``run``, ``train-tokenizer`` and ``inspect``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import Optional

# fimflow's own loggers; Beam's stay as the user configured them.
PACKAGE_LOGGERS = ("pipeline", "transforms", "bench")
BEAM_DOFN_ERROR_LOGGER = "apache_beam.runners.common"
logger = logging.getLogger(__name__)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record is logged (tests capture it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _):
        pass


def configure_logging(level: str = "INFO") -> None:
    """One line per message on stderr for fimflow's loggers, at ``level`` and above."""
    for name in PACKAGE_LOGGERS:
        package = logging.getLogger(name)
        if not any(isinstance(h, _StderrHandler) for h in package.handlers):
            handler = _StderrHandler()
            handler.setFormatter(logging.Formatter("%(message)s"))
            package.addHandler(handler)
        package.setLevel(level)
        package.propagate = False
    # Beam logs each failing DoFn with its traceback; fimflow reports the cause
    # in one line, and shows Beam's traceback at DEBUG.
    logging.getLogger(BEAM_DOFN_ERROR_LOGGER).setLevel(logging.NOTSET if level == "DEBUG" else logging.CRITICAL)
    relay = logging.getLogger(WORKER_LOG_RELAY)
    if not any(isinstance(f, _StartupNoise) for f in relay.filters):
        relay.addFilter(_StartupNoise())


# The multi-processing DirectRunner relays its SDK workers' log lines through this logger. Each
# worker writes two warnings as it starts that say nothing about the run: fimflow's options, which
# its own parser does not know, and the lack of a folder it uses on Dataflow only.
WORKER_LOG_RELAY = "apache_beam.runners.portability.local_job_service"
WORKER_STARTUP_NOISE = ("Discarding unparseable args", "No semi_persistent_directory found")


class _StartupNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(noise in message for noise in WORKER_STARTUP_NOISE)

USAGE = """usage: fimflow {run,train-tokenizer,inspect,report} [options]

  run              build a FIM dataset (fimflow run --help for options)
  train-tokenizer  train a SentencePiece or Hugging Face tokenizer for code with FIM sentinels
  inspect          print examples of a dataset readably
  report           write an HTML page showing what a dataset holds
"""


class _DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each flag's default, except a ``None`` default: its help says what it stands for."""

    def _get_help_string(self, action):
        return action.help if action.default is None else super()._get_help_string(action)


def _run(argv: list[str], launches_job: bool = False) -> int:
    """``fimflow run``. ``launches_job``: the Flex Template launcher runs this, and the job
    written to ``--template_location`` is the job Dataflow starts at once (``launch_flex_template``)."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions, SetupOptions

    from pipeline.argv import checked_argv, names_local_mode
    from pipeline.build import FimflowPipeline
    from pipeline.flags import FimflowOptions, UsageError
    from pipeline.memory import configure_malloc
    from pipeline.plan import plan_run
    from pipeline.processes import ended_cleanly
    from transforms.output_lock import OutputBusyError, OutputLock
    from transforms.schema import METADATA_FILE

    if "-h" in argv or "--help" in argv:
        parser = argparse.ArgumentParser(prog="fimflow run", formatter_class=_DefaultsHelpFormatter,
                                         description=(
            "Build a FIM dataset. Beam runner options (--runner, --direct_num_workers, "
            "--direct_running_mode, Dataflow options...) are accepted too."))
        FimflowOptions._add_argparse_args(parser)
        parser.print_help()
        return 0
    try:
        checked = checked_argv(argv)
        plan = plan_run(PipelineOptions(checked), pick_local_mode=not names_local_mode(checked))
    except UsageError as e:
        logger.error("fimflow run: error: %s", e)
        return 2
    options = beam_options(checked, plan)
    configure_logging(plan.log_level)
    start = time.monotonic()
    setup = options.view_as(SetupOptions)
    if setup.save_main_session is None:
        # Workers import fimflow as an installed package; pickling __main__
        # (Beam's default on Dataflow) would only add a way to break.
        setup.save_main_session = False
    # A classic template (--template_location by hand) may run any number of times, later:
    # no lock, no clearing. A Flex Template launch writes the one job about to run.
    template = None if launches_job else options.view_as(GoogleCloudOptions).template_location
    # Locally, the Python runner every test runs on; never Prism by surprise.
    runner = None
    if plan.local:
        runner = local_runner_for(options, plan)
        configure_malloc()
    pipeline = beam.Pipeline(runner=runner, options=options)
    lock = OutputLock(plan.output)
    _ = pipeline | "Fimflow" >> FimflowPipeline(plan, None if template else lock.run_id)
    if template:
        pipeline.run()
        logger.info("fimflow: wrote the Dataflow job template %s; nothing was submitted", template)
        return 0
    # The signal handlers are in place before the lock exists, so they always release it.
    with ended_cleanly(lock.release, f"fimflow run: terminated; no {METADATA_FILE} written",
                       f"fimflow run: interrupted; no {METADATA_FILE} written"):
        try:
            lock.acquire()
        except OutputBusyError as e:
            logger.error("fimflow run: error: %s", e)
            return 2
        logger.info("fimflow: %d input file(s) -> %s (%d shards%s)", len(plan.files), plan.output, plan.num_shards,
                    f", {plan.local_workers} worker processes" if plan.local_workers else "")
        try:
            return _run_holding(pipeline, plan, options, lock, start)
        finally:
            lock.release()


def beam_options(checked: list[str], plan):
    """The runner's options: the command line and what the plan chose for the runner (a local run's worker
    processes, where the command line named no mode)."""
    from apache_beam.options.pipeline_options import PipelineOptions

    return PipelineOptions([*checked, *plan.runner_flags])


def local_runner_for(options, plan):
    """The runner of a local run. Where it has SDK worker processes, they run ``pipeline.local_worker``:
    ``options`` then say ``in_memory`` with the plan's worker count, as
    ``transforms.beam_workarounds.local_runner`` needs."""
    from apache_beam.options.pipeline_options import DirectOptions

    from pipeline import local_worker
    from transforms.beam_workarounds import local_runner

    direct = options.view_as(DirectOptions)
    if not plan.local_workers or direct.direct_running_mode != "multi_processing":
        return local_runner(options)
    direct.direct_running_mode = "in_memory"
    direct.direct_num_workers = plan.local_workers
    return local_runner(options, local_worker.command())


def _run_holding(pipeline, plan, options, lock, start: float) -> int:
    """The run once this process holds the output: clear what an earlier run left, run, summarize.

    A local run (or ``--wait``) ends when the pipeline does. Otherwise the job
    is submitted and this returns, handing the lock to the job, whose last
    step releases it.
    """
    from apache_beam.io.filesystems import FileSystems

    from pipeline.checks import check_no_dataset
    from pipeline.flags import UsageError
    from pipeline.progress import Progress
    from transforms.schema import METADATA_FILE
    from transforms.write import remove_dataset_files

    try:
        # Under the lock: a run that finished since planning is seen here.
        check_no_dataset(plan.output, plan.overwrite)
        removed = remove_dataset_files(plan.output)
    except UsageError as e:
        logger.error("fimflow run: error: %s", e)
        return 2
    except Exception as e:  # Each filesystem raises its own.
        logger.debug("fimflow run: clearing the output failed", exc_info=True)
        logger.error("fimflow run: error: cannot clear %s: %s: %s", plan.output, type(e).__name__, e)
        return 1
    if removed:
        logger.info("fimflow: removed %d file(s) of an earlier run at %s", len(removed), plan.output)
    local = plan.local
    try:
        with Progress(plan.input_bytes, plan.fim.context_length, quiet=plan.quiet or not local):
            result = pipeline.run()
            state = result.wait_until_finish() if local else None
        if not (local or plan.wait):
            lock.hand_over(result.job_id() if getattr(result, "has_job", False) else "launched from a Flex Template")
            print(submitted_summary(result, options, plan.output))
            return 0
        state = state or result.wait_until_finish()
    except Exception as e:  # The runner wraps worker errors; the last line is the cause.
        logger.debug("fimflow run: the pipeline failed", exc_info=True)
        message = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        logger.error("fimflow run: failed: %s", message)
        return 1
    elapsed = time.monotonic() - start
    metadata_path = FileSystems.join(plan.output, METADATA_FILE)
    if not FileSystems.exists(metadata_path):
        logger.error("fimflow run: pipeline ended in state %s; no %s written", state, METADATA_FILE)
        return 1
    with FileSystems.open(metadata_path) as f:
        metadata = json.load(f)
    print(format_summary(metadata, elapsed, plan.input_bytes))
    return 0


def submitted_summary(result, options, output: str) -> str:
    """What a launcher prints once a job is submitted: the job, where to watch it, where it writes."""
    from apache_beam.options.pipeline_options import GoogleCloudOptions

    cloud = options.view_as(GoogleCloudOptions)
    # A Flex Template launch writes the job to a file; Dataflow creates it and shows its id.
    job_id = result.job_id() if getattr(result, "has_job", False) else None
    lines = [f"job            {job_id} ({result.state})" if job_id else
             f"job            written to {cloud.template_location}, for the Flex Template launch to create"]
    if job_id and cloud.region and cloud.project:
        lines.append(f"console        https://console.cloud.google.com/dataflow/jobs/{cloud.region}/{job_id}"
                     f"?project={cloud.project}")
    lines += [f"output         {output} (complete once {output}/metadata.json exists)",
              "counters       progress in the job's custom counters: read/bytes_read (of read/input_bytes), "
              "read/records_read, read/rejected/<reason>, tokenize/documents, tokenize/document_tokens, "
              "shards/examples"]
    return "\n".join(lines)


def format_summary(metadata: dict, seconds: float, input_bytes: int) -> str:
    counts = metadata["counts"]
    measured = metadata["measured"]
    errors = metadata["errors"]
    mb = input_bytes / 1e6
    unit = "documents" if metadata["fim"]["level"] == "document" else "fragments"
    lines = [
        f"documents      {counts.get('documents', 0):,} ({errors['records_rejected']:,} records rejected)",
        f"tokens         {counts.get('document_tokens', 0):,}",
        f"examples       {counts.get('examples', 0):,} x {metadata['context_length']} tokens "
        f"in {len(metadata['files'])} file(s)",
        f"FIM            {measured['fim_rate_observed']:.1%} of {counts.get('fim_candidates', 0):,} {unit} "
        f"({measured['spm_share_of_fim']:.1%} SPM), {measured['fim_token_share']:.1%} of tokens",
        f"trimmed        {counts.get('trimmed_tokens', 0):,} tokens, padding {measured['padding_share']:.2%}",
        f"time           {seconds:.1f} s, {mb / seconds:.2f} MB/s of input, "
        f"{counts.get('document_tokens', 0) / seconds:,.0f} tokens/s",
    ]
    return "\n".join(lines)


def _train_tokenizer(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="fimflow train-tokenizer", description=(
        "Train a lossless BPE tokenizer for code, with the FIM sentinels and pad as control symbols "
        "(SentencePiece) or special tokens (Hugging Face). Inputs are read like `fimflow run` reads them."))
    parser.add_argument("--input", action="append", required=True, help="File, directory or glob; repeatable.")
    parser.add_argument("--output", required=True,
                        help="Where to write the model: a .model file (sentencepiece) or a tokenizer.json "
                             "(huggingface).")
    parser.add_argument("--backend", choices=("sentencepiece", "huggingface"), default="sentencepiece",
                        help="sentencepiece: a SentencePiece .model; huggingface: a byte-level BPE tokenizer.json.")
    parser.add_argument("--vocab_size", type=int, default=16384)
    parser.add_argument("--text_field", default="content")
    parser.add_argument("--max_sentences", type=int, default=200_000,
                        help="Line-aligned pieces of documents sampled for training.")
    args = parser.parse_args(argv)

    from apache_beam.io.filesystems import FileSystems

    from pipeline.flags import UsageError
    from pipeline.plan import resolve_inputs
    from pipeline.train_tokenizer import BACKENDS
    from transforms.read import RecordReader
    from transforms.schema import Document

    try:
        files = resolve_inputs(args.input)
    except UsageError as e:
        logger.error("fimflow train-tokenizer: error: %s", e)
        return 2
    reader = RecordReader(args.text_field)

    def documents():
        for file in files:
            for item in reader.read(file.path):
                if isinstance(item, Document):
                    yield item.text

    model = BACKENDS[args.backend](documents(), vocab_size=args.vocab_size, max_sentences=args.max_sentences)
    with FileSystems.create(args.output) as f:
        f.write(model)
    print(f"fimflow train-tokenizer: wrote {args.output} ({len(model):,} bytes, vocab {args.vocab_size})")
    return 0


def _inspect(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="fimflow inspect", description="Print examples of a dataset readably.")
    parser.add_argument("output", help="Dataset directory (holding metadata.json).")
    parser.add_argument("--n", type=int, default=3, help="Number of examples to show.")
    parser.add_argument("--tokenizer", default=None, help="Model to decode with (default: the one recorded).")
    parser.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    parser.add_argument("--skip", type=int, default=0, help="Examples to pass over first (after the filter).")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--fim_only", action="store_true", help="Only examples with a FIM segment.")
    which.add_argument("--plain_only", action="store_true", help="Only examples without a FIM segment.")
    parser.add_argument("--split", default="train",
                        help="Which examples: train, or a held-out split's (validation, validation_ar, test, test_ar).")
    parser.add_argument("--raw", action="store_true",
                        help="Tokens in the order the model sees them, with the sentinels written out.")
    args = parser.parse_args(argv)
    from pipeline.extras import require_extra
    from pipeline.inspect_dataset import inspect_dataset

    require_extra("tf")
    color = args.color == "always" or (args.color == "auto" and sys.stdout.isatty())
    only = "fim" if args.fim_only else "plain" if args.plain_only else None
    return inspect_dataset(args.output, args.n, args.tokenizer, color, sys.stdout, args.skip, only, args.raw,
                           args.split)


WORKER_IMAGE_ENV = "FIMFLOW_WORKER_IMAGE"


def launch_flex_template(argv: list[str], environ=None) -> int:
    """The Flex Template entry point (``deploy/launch.py``): ``fimflow run`` with the template's
    parameters, as a job submission.

    The image records its own name in ``FIMFLOW_WORKER_IMAGE`` when it is built
    (``deploy/Dockerfile``), and that image is the workers' image unless the
    launch names another (``sdk_container_image``): every launch path (gcloud,
    the REST body, Terraform, the console) then starts workers that have
    fimflow, its pins and the bundled model.
    """
    import os

    image = (os.environ if environ is None else environ).get(WORKER_IMAGE_ENV)
    named = any(a.lstrip("-").split("=")[0] in ("sdk_container_image", "worker_harness_container_image")
                for a in argv)
    if image and not named:
        argv = [*argv, f"--sdk_container_image={image}"]
    return _run(argv, launches_job=True)


def _report(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="fimflow report", description=(
        "One self-contained HTML page (plots embedded, opens offline) showing what a dataset holds: length "
        "distributions, FIM and SPM shares, padding, sources, dead letters, options and rendered examples."))
    parser.add_argument("output", help="Dataset directory (holding metadata.json), local or gs://.")
    parser.add_argument("--out", default=None, help="Where to write the page (default: OUTPUT/report.html).")
    parser.add_argument("--json", action="store_true", help="Print the page's numbers as JSON instead.")
    parser.add_argument("--examples", type=int, default=4, help="Examples rendered in the page.")
    args = parser.parse_args(argv)
    from pipeline.extras import require_extra
    from pipeline.report import write_report

    if not args.json:
        require_extra("report")
    return write_report(args.output, args.out, args.json, args.examples, sys.stdout)


COMMANDS = {"run": _run, "train-tokenizer": _train_tokenizer, "inspect": _inspect, "report": _report}


def main(argv: Optional[list[str]] = None) -> int:
    import os

    # Beam imports TensorFlow where it is installed: its C++ start-up notes (oneDNN,
    # CPU features) would fill the user's terminal. Set before anything imports it.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    argv = sys.argv[1:] if argv is None else argv
    configure_logging()
    if not argv or argv[0] not in COMMANDS:
        print(USAGE, file=sys.stderr if argv and argv[0] not in ("-h", "--help") else sys.stdout)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    from pipeline.flags import UsageError

    try:
        return COMMANDS[argv[0]](argv[1:])
    except UsageError as e:
        print(f"fimflow {argv[0]}: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader stopped reading (`fimflow inspect ... | head`): not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def console_main() -> None:
    """The ``fimflow`` command (and ``python -m pipeline``): ``main``, then exit at once with its code.

    At once (``os._exit``), once logging and stdout are flushed: by then every
    file is written and closed, and what the interpreter would still do is
    tear down the modules of Beam, pandas, gRPC and the run's objects, about
    0.4 s on 2 cores (docs/throughput.md), a tenth of a 30 MB build's
    fixed cost. Callers of ``main`` from Python keep a normal exit.
    """
    import os

    code = main()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, ValueError):  # A reader gone, or the stream closed.
            pass
    os._exit(code)
