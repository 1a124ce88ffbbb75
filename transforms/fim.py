"""Document-level Fill-in-the-Middle as a stage, for the paper's ablation (``--fim_level document``).

``ApplyDocumentFim``: ``TokenizedDocument`` -> ``TokenizedDocument``, each
whole document transformed (``transforms.core.fim.fim_document``) before
packing; statistics: FIM/PSM/SPM documents and tokens. The paper's
context-level FIM, after packing, runs where each shard is written
(``transforms.shards``).
"""

from __future__ import annotations

import apache_beam as beam

from transforms.core.fim import fim_document
from transforms.core.tokenizer import TokenizerHandle
from transforms.schema import FimConfig, Stats, TokenizedDocument
from transforms.stats import StepWithStats


class DocumentFimStep:
    """One ``TokenizedDocument`` -> the same document, FIM applied with probability ``config.rate``."""

    def __init__(self, tokenizer: TokenizerHandle, seed: int, config: FimConfig):
        self._tokenizer_handle = tokenizer
        self._seed = seed
        self._config = config

    def setup(self):
        self._tokenizer = self._tokenizer_handle.acquire()

    def __call__(self, document: TokenizedDocument, stats: Stats):
        output, counts = fim_document(document, self._seed, self._config, self._tokenizer)
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
        self._step = DocumentFimStep(tokenizer, seed, config)

    def expand(self, documents):
        return documents | "FimDocument" >> StepWithStats("fim", self._step, "documents",
                                                          TokenizedDocument, TokenizedDocument)
