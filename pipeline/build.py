"""The fimflow pipeline: read -> tokenize -> shuffle -> pack -> FIM -> write.

``build_pipeline`` adds every stage to a Beam pipeline from a checked
``RunPlan``; runners and their options are the caller's business.
"""

from __future__ import annotations

import json

import apache_beam as beam

from pipeline import __version__
from pipeline.options import RunPlan
from transforms.fim import ApplyDocumentFim, ApplyFim
from transforms.pack import PackChunks
from transforms.read import ReadDocuments
from transforms.shuffle import ShuffleDocuments
from transforms.stats import MergeStats
from transforms.tokenize import TokenizeDocuments
from transforms.tokenizer import TokenizerHandle
from transforms.write import EXAMPLE_FEATURES, WriteExamples, WriteMetadata, WriteRejected, rejected_stats


def static_metadata(plan: RunPlan) -> dict:
    """The parts of metadata.json known before the run."""
    fim = plan.fim
    return {
        "format": "fimflow/v1",
        "fimflow_version": __version__,
        "context_length": fim.context_length,
        "vocab_size": plan.tokenizer.vocab_size,
        "special_tokens": plan.tokenizer.special.as_dict(),
        "features": list(EXAMPLE_FEATURES),
        "fim": {"level": fim.level, "rate": fim.rate, "spm_rate": fim.spm_rate,
                "spm_variant": "prefix_suffix_sentinels_then_suffix_middle_prefix_middle",
                "span_unit": fim.span_unit, "trim": fim.trim,
                "max_middle_tokens": fim.max_middle_tokens,
                "min_fragment_tokens": fim.min_fragment_tokens},
        "seed": plan.seed,
        "tokenizer": {"path": plan.tokenizer_path, "sha256": plan.tokenizer.sha256},
        "num_buckets": plan.num_buckets,
        "num_shards": plan.num_shards,
        "inputs": len(plan.files),
        # Round-trip through JSON so metadata.json holds only what JSON can.
        "options": json.loads(json.dumps(plan.options, default=str, sort_keys=True)),
    }


def build_pipeline(p: beam.Pipeline, plan: RunPlan) -> None:
    tokenizer = TokenizerHandle(plan.tokenizer_path, plan.tokenizer.names, reference=not plan.word_cache)
    read = p | "Read" >> ReadDocuments(plan.files, plan.text_field, plan.id_field, plan.max_file_bytes)
    tokenized = read["documents"] | "Tokenize" >> TokenizeDocuments(
        tokenizer, plan.tokenizer_threads, plan.tokenizer_processes)
    stats = []
    if plan.fim.level == "document":
        document_fim = tokenized | "DocumentFim" >> ApplyDocumentFim(tokenizer, plan.seed, plan.fim)
        tokenized = document_fim["documents"]
        stats.append(document_fim["stats"])
    buckets = tokenized | "Shuffle" >> ShuffleDocuments(plan.seed, plan.num_buckets)
    packed = buckets | "Pack" >> PackChunks(plan.fim.context_length, plan.tokenizer.special.eot)
    fim = packed["chunks"] | "Fim" >> ApplyFim(tokenizer, plan.seed, plan.fim)
    shards = fim["examples"] | "WriteExamples" >> WriteExamples(plan.output, plan.num_shards, plan.seed)
    error_shards = read["rejected"] | "WriteRejected" >> WriteRejected(plan.output)
    rejected = read["rejected"] | "RejectedStats" >> beam.Map(rejected_stats)
    stats = ((*stats, packed["stats"], fim["stats"], rejected)
             | "AllStats" >> beam.Flatten()
             | "MergeStats" >> MergeStats())
    _ = stats | "WriteMetadata" >> WriteMetadata(
        plan.output, static_metadata(plan), plan.max_error_fraction,
        shards, error_shards)
