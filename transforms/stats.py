"""Merging the statistics ``Counter``s that stages emit beside their data."""

from __future__ import annotations

from collections import Counter

import apache_beam as beam


class SumCounters(beam.CombineFn):
    def create_accumulator(self):
        return Counter()

    def add_input(self, acc, counts):
        acc.update(counts)
        return acc

    def merge_accumulators(self, accs):
        total = Counter()
        for acc in accs:
            total.update(acc)
        return total

    def extract_output(self, acc):
        return dict(sorted(acc.items()))


class MergeStats(beam.PTransform):
    """``PCollection[Counter]`` (any number of them) -> one ``dict`` of summed counts."""

    def expand(self, counters):
        return counters | beam.CombineGlobally(SumCounters())
