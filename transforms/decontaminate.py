"""Dropping documents that share a long word sequence with a benchmark (``--decontaminate``).

In: ``Document``. Out: the documents that share no ``n``-word sequence with
any benchmark file, and a ``Rejected`` (reason ``contaminated``, the file and
the sequence in its detail) for each that does; statistics:
records_rejected, rejected/contaminated, and per benchmark file
``decontaminate/<file>/documents``. Workers read the benchmark files
themselves (``apache_beam.utils.shared``: once per process) and check that
each is the file planned, so no index travels in the job graph.
"""

from __future__ import annotations

import hashlib

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.utils import shared

from transforms.core.contamination import BenchmarkIndex, benchmark_texts
from transforms.schema import CONTAMINATION_PREFIX, REJECTED_REASON_PREFIX, Document, Rejected, Stats
from transforms.stats import StepWithStats


def read_benchmark(path: str) -> tuple[bytes, str]:
    """A benchmark file's bytes and sha256."""
    with FileSystems.open(path) as f:
        data = f.read()
    return data, hashlib.sha256(data).hexdigest()


def load_index(files: tuple, n: int) -> BenchmarkIndex:
    """The index of ``files`` (``(path, sha256)`` each); fails if one changed since it was planned."""
    texts = []
    for path, planned in files:
        data, sha256 = read_benchmark(path)
        if sha256 != planned:
            raise ValueError(f"--decontaminate {path} changed after the run was planned: sha256 {sha256}, "
                             f"planned {planned}")
        texts.append((path, benchmark_texts(path, data)))
    return BenchmarkIndex(texts, n)


class _Index:
    """A ``BenchmarkIndex`` in a form ``apache_beam.utils.shared`` can hold (weak-referenceable)."""

    def __init__(self, index: BenchmarkIndex):
        self.index = index


class DecontaminateStep:
    def __init__(self, files: tuple, n: int):
        self._files = files
        self._n = n
        self._shared = shared.Shared()

    def setup(self):
        self._index = self._shared.acquire(lambda: _Index(load_index(self._files, self._n)),
                                           tag=(self._files, self._n)).index

    def __call__(self, doc: Document, stats: Stats):
        found = self._index.matches(doc.text)
        if not found:
            yield doc
            return
        for name in found:
            stats[f"{CONTAMINATION_PREFIX}{name}/documents"] += 1
        stats["records_rejected"] += 1
        stats[REJECTED_REASON_PREFIX + "contaminated"] += 1
        name, gram = sorted(found.items())[0]
        yield Rejected(doc.source, doc.position, "contaminated",
                       f"shares {self._n} words with {name}: {gram[:200]!r}", doc.text[:200], doc.id)


class Decontaminate(beam.PTransform):
    """``PCollection[Document]`` -> ``{'documents': ..., 'rejected': PCollection[Rejected], 'stats': ...}``."""

    def __init__(self, files: tuple, n: int):
        super().__init__()
        self._step = DecontaminateStep(files, n)

    def expand(self, documents):
        return documents | "Match" >> StepWithStats("decontaminate", self._step, "documents", Document, Document,
                                                    tagged={Rejected: "rejected"})
