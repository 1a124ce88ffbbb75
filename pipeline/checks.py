"""Safety checks of a run, each raising one ``UsageError`` line before anything is written.

That the output holds no dataset and is not read as input, that Dataflow
workers get fimflow, that benchmark files for decontamination are usable, and
that a local run fits in memory.
"""

from __future__ import annotations

import os

from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions, StandardOptions, WorkerOptions

from pipeline.flags import UsageError
from pipeline.machine import LOCAL_MEMORY_PER_TEXT_BYTE, Machine, local_memory_need
from transforms.core.contamination import BenchmarkError, BenchmarkIndex, benchmark_texts
from transforms.decontaminate import read_benchmark
from transforms.match import is_local_directory
from transforms.schema import METADATA_FILE, InputFile


def check(condition: bool, message: str):
    """Raises ``UsageError(message)`` unless ``condition``."""
    if not condition:
        raise UsageError(message)


def check_local_memory(text_bytes: int, machine: Machine, workers: int = 0) -> None:
    """Raises ``UsageError`` when a local run of ``text_bytes`` with ``workers`` worker or helper processes
    would not fit in the ``machine``'s available memory (None: unknown, or not checked)."""
    need = local_memory_need(text_bytes, workers)
    available = machine.available_memory
    if available is None or need <= available:
        return
    fits = max(0, (available - local_memory_need(0, workers)) // LOCAL_MEMORY_PER_TEXT_BYTE)
    processes = f" with {workers + 1} processes" if workers else ""
    raise UsageError(
        f"about {text_bytes / 1e6:,.0f} MB of text needs about {need / 1e9:.1f} GB of memory on the local runner"
        f"{processes} ({LOCAL_MEMORY_PER_TEXT_BYTE} bytes per byte of text), and {available / 1e9:.1f} GB is "
        f"available: run it on Dataflow (deploy/README.md), or locally in parts of at most {fits / 1e6:,.0f} MB "
        "of text (--include/--exclude), or pass --memory_check=false to try anyway")


def check_no_dataset(output: str, overwrite: bool) -> None:
    """Raises ``UsageError`` if ``output`` holds a complete dataset and ``overwrite`` is off."""
    check(overwrite or not FileSystems.exists(FileSystems.join(output, METADATA_FILE)),
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
        check(not (recursive and _inside(output, root)),
               f"--output {output} is inside --input {pattern}: the run would read its own output")
    inside = [f.path for f in files if _inside(f.path, output)]
    check(not inside, f"--input matches {len(inside)} file(s) inside --output {output}, e.g. {inside[:1]}")


def check_workers_get_fimflow(options: PipelineOptions) -> None:
    """Raises ``UsageError`` for a Dataflow job whose workers would start on Beam's stock image.

    That image has neither fimflow nor SentencePiece: every worker would fail
    at its first element, after minutes of start-up.
    """
    if options.view_as(StandardOptions).runner not in ("DataflowRunner", "dataflow"):
        return
    workers = options.view_as(WorkerOptions)
    image = workers.sdk_container_image or workers.worker_harness_container_image
    check(bool(image or options.view_as(SetupOptions).setup_file),
           "--runner DataflowRunner needs --sdk_container_image IMAGE (the image deploy/Dockerfile builds) "
           "or --setup_file ./setup.py: Beam's stock worker image has neither fimflow nor sentencepiece")


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
        check(count > 0, f"--decontaminate {path}: no text of {n} words or more, so it can match nothing")
    return files, counts
