"""The one way stages run their Beam-free steps and count what they did.

A *step* is a picklable object with ``__call__(element, stats)`` that yields
outputs and adds counts to ``stats`` (a ``Counter``), and optionally
``setup()``/``teardown()`` for heavy objects such as a tokenizer.
``StepWithStats`` runs it in a DoFn: outputs go to the main output (or, by
type, to tagged outputs), and each bundle's counts are emitted once, at the
end of the bundle, both as a ``Stats`` element on the ``stats`` output (what
``metadata.json`` reports, exact on every runner, since a retried bundle's
outputs are discarded) and as Beam counters in the stage's namespace (what
the Dataflow UI and ``PipelineResult.metrics()`` show). Each count is made
once and published twice, never counted twice.

``MergeStats`` sums any number of ``Stats`` collections into one dict.
"""

from __future__ import annotations

from collections import Counter
from typing import Optional

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindows

from transforms.schema import Stats

STATS_TAG = "stats"


class _StepFn(beam.DoFn):
    def __init__(self, namespace: str, step, tagged: dict):
        self._namespace = namespace
        self._step = step
        self._tagged = tagged
        self._stats: Stats = Counter()

    def setup(self):
        if hasattr(self._step, "setup"):
            self._step.setup()

    def teardown(self):
        if hasattr(self._step, "teardown"):
            self._step.teardown()

    def start_bundle(self):
        self._stats = Counter()

    def process(self, element):
        for output in self._step(element, self._stats):
            tag = self._tagged.get(type(output))
            yield output if tag is None else beam.pvalue.TaggedOutput(tag, output)

    def finish_bundle(self):
        stats = {name: value for name, value in self._stats.items() if value}
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
