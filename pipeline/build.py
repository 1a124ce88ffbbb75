"""The fimflow pipeline as one composite PTransform: read -> tokenize -> shuffle -> pack -> FIM -> write.

``FimflowPipeline(plan)`` applies every stage to a pipeline from a checked
``RunPlan``; runners and their options are the caller's business. The CLI,
the tests (with ``TestPipeline``) and the benchmark all build it this way.
"""

from __future__ import annotations

import json
from typing import Optional

import apache_beam as beam

from pipeline import __version__
from pipeline.options import RunPlan
from transforms.core.fim_format import SENTINEL_ROLES, fim_format
from transforms.core.tokenizer import TokenizerHandle
from transforms.fim import ApplyDocumentFim, ApplyFim
from transforms.match import MatchInputs, input_stats
from transforms.pack import PackChunks
from transforms.read import ReadDocuments
from transforms.repository import GroupRepositories
from transforms.schema import EXAMPLE_FEATURES
from transforms.shuffle import ShuffleDocuments
from transforms.stats import MergeStats
from transforms.tokenize import TokenizeDocuments
from transforms.write import WriteExamples, WriteMetadata, WriteRejected


# Re-encoding a file's prefix, middle and suffix apart can take a few ids more than the file had.
REENCODING_SLACK = 4


def repository_reserve(plan: RunPlan) -> int:
    """Ids kept free beside each repository part: the sentinels FIM adds to one file, and slack."""
    return REENCODING_SLACK + max(sum(item in SENTINEL_ROLES for item in layout)
                                  for layout in fim_format(plan.fim.format).orders.values())


def repository_budget(plan: RunPlan) -> int:
    """Ids per repository part: a context less its ``<eot>`` and the reserve."""
    return plan.fim.context_length - 1 - repository_reserve(plan)


def static_metadata(plan: RunPlan) -> dict:
    """The parts of metadata.json known before the run."""
    fim = plan.fim
    pieces = plan.tokenizer.special_pieces
    return {
        "format": "fimflow/v1",
        "fimflow_version": __version__,
        "context_length": fim.context_length,
        "vocab_size": plan.tokenizer.vocab_size,
        "special_tokens": plan.tokenizer.special.as_dict(),
        "special_pieces": plan.tokenizer.special_pieces,
        "bos": plan.tokenizer.special.bos is not None,
        "features": list(EXAMPLE_FEATURES),
        "fim": {"format": fim.format, "layout": fim_format(fim.format).describe(plan.tokenizer.special_pieces),
                "part_tokenization": "each of P, S, M encoded on its own, without the implicit leading space; "
                                     "a prefix at a document's start keeps the document's",
                "level": fim.level, "rate": fim.rate, "spm_rate": fim.spm_rate,
                "span_unit": fim.span_unit, "trim": fim.trim,
                "max_middle_tokens": fim.max_middle_tokens,
                "min_fragment_tokens": fim.min_fragment_tokens},
        "repository": None if plan.repository is None else {
            "fields": dict(zip(("repo", "path"), plan.repository)), "order": "path",
            "part_tokens": repository_budget(plan),
            "layout": [pieces[role] if role in pieces else role for role in (
                ["bos"] * ("bos" in pieces) + ["repo_name", "NAME", "file_sep", "PATH\\n", "CODE", "file_sep",
                                              "PATH\\n", "CODE", "...", "eot"])]},
        "seed": plan.seed,
        "tokenizer": {"path": plan.tokenizer_path, "sha256": plan.tokenizer.sha256},
        "num_buckets": plan.num_buckets,
        "num_shards": plan.num_shards,
        "inputs": len(plan.files),
        "input_bytes": plan.input_bytes,
        # Round-trip through JSON so metadata.json holds only what JSON can.
        "options": json.loads(json.dumps(plan.options, default=str, sort_keys=True)),
    }


class FimflowPipeline(beam.PTransform):
    """``PBegin`` -> ``PCollection[str]``: the path of ``metadata.json``, once the dataset is complete.

    Writes the shards, the dead letters and ``metadata.json`` under
    ``plan.output``; fails (writing no ``metadata.json``) when the files read
    are not the files planned, a record is unaccounted for or the error
    budget is exceeded. ``run_id``: the ``OutputLock`` this run holds, checked
    before ``metadata.json`` is written and released after.
    """

    def __init__(self, plan: RunPlan, run_id: Optional[str] = None):
        super().__init__()
        self._plan = plan
        self._run_id = run_id

    def expand(self, pbegin):
        plan = self._plan
        tokenizer = TokenizerHandle(plan.tokenizer_path, plan.tokenizer.names, reference=not plan.word_cache,
                                    sha256=plan.tokenizer.sha256)
        matched = pbegin | "Match" >> MatchInputs(plan.selection)
        read = matched["files"] | "Read" >> ReadDocuments(plan.text_field, plan.id_field, plan.max_file_bytes,
                                                          plan.split_bytes, plan.language_field, plan.repository)
        tokenized = read["documents"] | "Tokenize" >> TokenizeDocuments(
            tokenizer, plan.tokenizer_threads, plan.tokenizer_processes)
        stats = [matched["stats"], read["stats"], tokenized["stats"]]
        documents = tokenized["documents"]
        if plan.repository is not None:
            repositories = documents | "Repositories" >> GroupRepositories(tokenizer, repository_budget(plan))
            documents = repositories["documents"]
            stats.append(repositories["stats"])
        if plan.fim.level == "document":
            document_fim = documents | "DocumentFim" >> ApplyDocumentFim(tokenizer, plan.seed, plan.fim)
            documents = document_fim["documents"]
            stats.append(document_fim["stats"])
        buckets = documents | "Shuffle" >> ShuffleDocuments(plan.seed, plan.num_buckets)
        reserve = repository_reserve(plan) if plan.repository is not None else 0
        packed = buckets | "Pack" >> PackChunks(plan.fim.context_length, plan.tokenizer.special.eot, reserve)
        fim = packed["chunks"] | "Fim" >> ApplyFim(tokenizer, plan.seed, plan.fim)
        stats += [packed["stats"], fim["stats"]]
        shards = fim["examples"] | "WriteExamples" >> WriteExamples(plan.output, plan.num_shards, plan.seed)
        error_shards = read["rejected"] | "WriteRejected" >> WriteRejected(plan.output, plan.num_shards)
        merged = tuple(stats) | "MergeStats" >> MergeStats()
        return merged | "WriteMetadata" >> WriteMetadata(
            plan.output, static_metadata(plan), plan.max_error_fraction, shards, error_shards,
            dict(input_stats(plan.files)), self._run_id)
