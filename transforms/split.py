"""Assigning documents to train, validation and test (``transforms.core.splits``).

In: ``Document``. Out: the same ``Document`` with ``split`` set, and
statistics per split: ``split/<name>/documents`` and ``.../text_chars``.
A repository's files (``--group_by repo``) go by the repository's name, so a
repository never spans two splits.
"""

from __future__ import annotations

import apache_beam as beam

from transforms.core.splits import split_of
from transforms.schema import Document, Stats
from transforms.stats import StepWithStats


def split_identity(doc: Document) -> bytes:
    return doc.repo.encode("utf-8", "surrogatepass") if doc.repo is not None else doc.content_hash


class SplitStep:
    def __init__(self, validation: float, test: float):
        self._validation = validation
        self._test = test

    def __call__(self, doc: Document, stats: Stats):
        split = split_of(split_identity(doc), self._validation, self._test)
        stats[f"split/{split}/documents"] += 1
        stats[f"split/{split}/text_chars"] += len(doc.text)
        yield doc._replace(split=split)


class AssignSplits(beam.PTransform):
    """``PCollection[Document]`` -> ``{'documents': PCollection[Document], 'stats': PCollection[Stats]}``."""

    def __init__(self, validation: float, test: float):
        super().__init__()
        self._step = SplitStep(validation, test)

    def expand(self, documents):
        return documents | "Assign" >> StepWithStats("split", self._step, "documents", Document, Document)
