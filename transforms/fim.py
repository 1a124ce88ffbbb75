"""Fill-in-the-Middle as a stage: the algorithms of ``transforms.core.fim`` in thin DoFns.

``FimStep`` runs ``fim_chunk``: ``Chunk`` -> ``Example`` (the paper's
context-level FIM, after packing; ``transforms.shards`` runs it per bucket).
``ApplyDocumentFim``: ``TokenizedDocument`` -> ``TokenizedDocument``
(whole documents before packing, for the paper's ablation). Both also emit
statistics: fragments, FIM/PSM/SPM fragments, FIM tokens, trimmed and padding
tokens, the fragment length histogram.
"""

from __future__ import annotations

from typing import Callable

import apache_beam as beam

from transforms.core.fim import fim_document
from transforms.core.tokenizer import TokenizerHandle
from transforms.schema import FimConfig, Stats, TokenizedDocument
from transforms.stats import StepWithStats


class FimStep:
    """Runs ``transform(element, seed, config, tokenizer) -> (output, stats)`` per element."""

    def __init__(self, transform: Callable, tokenizer: TokenizerHandle, seed: int, config: FimConfig):
        self._transform = transform
        self._tokenizer_handle = tokenizer
        self._seed = seed
        self._config = config

    def setup(self):
        self._tokenizer = self._tokenizer_handle.acquire()

    def __call__(self, element, stats: Stats):
        output, counts = self._transform(element, self._seed, self._config, self._tokenizer)
        stats.update(counts)
        yield output


class ApplyDocumentFim(beam.PTransform):
    """``PCollection[TokenizedDocument]`` -> ``{'documents': ..., 'stats': PCollection[Stats]}``.

    Whole documents become FIM examples before packing: the common but worse
    method, kept for ablations. Packing later cuts some of them apart; the
    chunk stage counts those as ``document_fim_examples_cut``.
    """

    def __init__(self, tokenizer: TokenizerHandle, seed: int, config: FimConfig):
        super().__init__()
        self._step = FimStep(fim_document, tokenizer, seed, config)

    def expand(self, documents):
        return documents | "FimDocument" >> StepWithStats("fim", self._step, "documents",
                                                          TokenizedDocument, TokenizedDocument)
