"""The one way stages run their Beam-free steps and count what they did.

A *step* is a picklable object with ``__call__(element, stats)`` that yields
outputs and adds counts to ``stats`` (a ``Counter``), and optionally
``setup()``/``teardown()`` for heavy objects such as a tokenizer, and
``start_bundle()``/``finish_bundle(stats)`` for a step that hands work to
other processes and yields what they made later: ``finish_bundle`` yields the
bundle's outputs still held back (``transforms.core.tokenizer_pool``).
``StepWithStats`` runs it in a DoFn: outputs go to the main output (or, by
type, to tagged outputs), and each bundle's counts are emitted once, at the
end of the bundle, both as a ``Stats`` element on the ``stats`` output (what
``metadata.json`` reports, exact on every runner, since a retried bundle's
outputs are discarded) and as Beam counters in the stage's namespace (what
the Dataflow UI and ``PipelineResult.metrics()`` show). Each count is made
once and published twice, never counted twice.

``MergeStats`` sums any number of ``Stats`` collections into one dict.

Progress: where ``FIMFLOW_PROGRESS_DIR`` is set (a local ``fimflow run``
sets it for its own processes), each DoFn also appends its bundle's counts
so far to ``DIR/<process id>.jsonl``, at most twice a second, for the
launcher to show (``pipeline.progress``). Only a view: nothing in the
dataset depends on it.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections import Counter
from typing import Optional

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindows

from transforms.schema import Stats

STATS_TAG = "stats"
PROGRESS_DIR_ENV = "FIMFLOW_PROGRESS_DIR"
PROGRESS_INTERVAL_SECONDS = 0.5


class _ProgressWriter:
    """Appends a bundle's counts so far to this process's progress file, at most once per interval."""

    def __init__(self, directory: str, namespace: str):
        self._path = os.path.join(directory, f"{os.getpid()}.jsonl")
        self._namespace = namespace
        self._bundle = ""
        self._next = 0.0

    def start(self):
        self._bundle = uuid.uuid4().hex
        self._next = time.monotonic() + PROGRESS_INTERVAL_SECONDS

    def write(self, stats: Stats, final: bool = False):
        now = time.monotonic()
        if not final and now < self._next:
            return
        self._next = now + PROGRESS_INTERVAL_SECONDS
        line = json.dumps({"stage": self._namespace, "bundle": self._bundle, "stats": stats})
        try:
            with open(self._path, "a", encoding="utf-8") as f:
                f.write(line + "\n")
        except OSError:  # The launcher is gone or its folder removed: progress is only a view.
            pass


class _StepFn(beam.DoFn):
    def __init__(self, namespace: str, step, tagged: dict):
        self._namespace = namespace
        self._step = step
        self._tagged = tagged
        self._stats: Stats = Counter()
        self._progress: Optional[_ProgressWriter] = None

    def setup(self):
        directory = os.environ.get(PROGRESS_DIR_ENV)
        self._progress = _ProgressWriter(directory, self._namespace) if directory else None
        if hasattr(self._step, "setup"):
            self._step.setup()

    def teardown(self):
        if hasattr(self._step, "teardown"):
            self._step.teardown()

    def start_bundle(self):
        self._stats = Counter()
        if self._progress:
            self._progress.start()
        if hasattr(self._step, "start_bundle"):
            self._step.start_bundle()

    def _to_output(self, output, value):
        """``value`` (``output``, or it in a window) on the output ``output``'s type goes to."""
        tag = self._tagged.get(type(output))
        return value if tag is None else beam.pvalue.TaggedOutput(tag, value)

    def process(self, element):
        for output in self._step(element, self._stats):
            yield self._to_output(output, output)
        if self._progress:
            self._progress.write(self._stats)

    def finish_bundle(self):
        if hasattr(self._step, "finish_bundle"):
            # Outside ``process`` an output needs its window: every collection here is in the global one.
            for output in self._step.finish_bundle(self._stats):
                yield self._to_output(output, GlobalWindows.windowed_value(output))
        stats = {name: value for name, value in self._stats.items() if value}
        if self._progress and stats:
            self._progress.write(stats, final=True)
        if not stats:
            return
        for name, value in stats.items():
            beam.metrics.Metrics.counter(self._namespace, name).inc(value)
        yield beam.pvalue.TaggedOutput(STATS_TAG, GlobalWindows.windowed_value(stats))


class StepWithStats(beam.PTransform):
    """``PCollection[In]`` -> ``{main: PCollection[Out], *tagged: ..., 'stats': PCollection[Stats]}``.

    ``tagged`` maps output types to output names, e.g. ``{Rejected: 'rejected'}``.
    """

    def __init__(self, namespace: str, step, main: str, input_type=None, output_type=None,
                 tagged: Optional[dict] = None):
        super().__init__()
        self._fn = _StepFn(namespace, step, dict(tagged or {}))
        self._main = main
        self._tags = tuple((tagged or {}).values())
        self._input_type = input_type
        self._output_type = output_type

    def expand(self, elements):
        pardo = beam.ParDo(self._fn)
        if self._input_type is not None:
            pardo = pardo.with_input_types(self._input_type)
        if self._output_type is not None:
            pardo = pardo.with_output_types(self._output_type)
        results = elements | "Run" >> pardo.with_outputs(STATS_TAG, *self._tags, main=self._main)
        return {name: results[name] for name in (self._main, *self._tags, STATS_TAG)}


def prefixed(stats: Stats, prefix: str) -> Stats:
    """``stats`` with ``prefix`` before every name (a held-out split's counts)."""
    return Counter({prefix + key: value for key, value in stats.items()})


class _SumStats(beam.CombineFn):
    def create_accumulator(self):
        return Counter()

    def add_input(self, acc, stats):
        acc.update(stats)
        return acc

    def merge_accumulators(self, accs):
        total = Counter()
        for acc in accs:
            total.update(acc)
        return total

    def extract_output(self, acc):
        return dict(sorted(acc.items()))


class MergeStats(beam.PTransform):
    """Any number of ``PCollection[Stats]`` (a tuple) -> one ``dict`` of summed counts."""

    def expand(self, stats):
        return (stats
                | "Flatten" >> beam.Flatten()
                | "Sum" >> beam.CombineGlobally(_SumStats()))
