"""The fimflow pipeline as one composite PTransform: read -> tokenize -> shuffle -> (pack -> FIM -> write).

``FimflowPipeline(plan)`` applies every stage to a pipeline from a checked
``RunPlan``; runners and their options are the caller's business. The CLI,
the tests (with ``TestPipeline``) and the benchmark all build it this way.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Optional

import apache_beam as beam

from pipeline import __version__
from pipeline.plan import RunPlan
from transforms.core import minhash
from transforms.core.fim_format import fim_format
from transforms.core.splits import TEST, TRAIN, VALIDATION
from transforms.core.tokenizer import TokenizerHandle
from transforms.decontaminate import Decontaminate
from transforms.eval_sets import EvalProblems
from transforms.fim import ApplyDocumentFim
from transforms.match import MatchInputs, input_stats
from transforms.near_dedup import MAX_ROUNDS, RemoveNearDuplicates, WriteDedupLog
from transforms.read import ReadDocuments
from transforms.repository import GroupRepositories
from transforms.schema import EXAMPLE_FEATURES, SPLIT_PREFIX
from transforms.shards import ShardCopy, WriteShards
from transforms.shuffle import ShuffleDocuments
from transforms.sinks import output_sink
from transforms.split import AssignSplits
from transforms.stats import MergeStats, prefixed
from transforms.tokenize import TokenizeDocuments
from transforms.write import WriteEvalSets, WriteMetadata, WriteRejected


def near_dedup_settings(plan: RunPlan) -> Optional[dict]:
    """``metadata.json``'s ``dedup`` settings of a ``--dedup near`` run (its counts come from the run)."""
    if plan.near_dedup is None:
        return None
    threshold, ngram = plan.near_dedup
    params = minhash.lsh_params(threshold)
    return {"mode": "near", "unit": "repository part" if plan.repository is not None else "document",
            "near": {"unit": "document (a repository's file with --group_by repo)", "shingle_words": ngram,
                     "num_perm": params.num_perm, "bands": params.bands, "rows": params.rows,
                     "threshold": threshold, "minhash_seed": minhash.MINHASH_SEED,
                     "max_label_rounds": MAX_ROUNDS, "log": plan.dedup_log}}


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
            "part_tokens": plan.repository_budget,
            "layout": [pieces[role] if role in pieces else role for role in (
                ["bos"] * ("bos" in pieces) + ["repo_name", "NAME", "file_sep", "PATH\\n", "CODE", "file_sep",
                                              "PATH\\n", "CODE", "...", "eot"])]},
        "dedup": near_dedup_settings(plan) or {
            "mode": "exact" if plan.dedup else "none",
            "unit": "repository part" if plan.repository is not None else "document"},
        "split_assignment": {
            "validation_fraction": plan.validation_fraction, "test_fraction": plan.test_fraction,
            "by": "repository name" if plan.repository is not None else "document content hash",
            "heldout_fim_rates": {split + suffix: rate for split in plan.heldout_splits
                                  for suffix, rate in plan.heldout_rates.items()}},
        "decontamination": {"ngram_words": plan.contamination_ngram, "files": {
            path: {"sha256": sha256, "ngrams": plan.contamination_ngrams[path]}
            for path, sha256 in plan.contamination}} if plan.contamination else None,
        "seed": plan.seed,
        "tokenizer": {"path": plan.tokenizer_path, "sha256": plan.tokenizer.sha256, "backend": plan.tokenizer.backend},
        "num_shards": plan.num_shards,
        "shards": plan.shards,
        # Each format's files per shard (the first listed in "files"), and what reads it (docs/trainers.md).
        "output_formats": [{"name": name, "files_per_shard": list(output_sink(name).suffixes),
                            "read_with": output_sink(name).reading} for name in plan.output_formats],
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
                                                          plan.split_bytes, plan.language_field, plan.repository,
                                                          plan.respread)
        stats = [matched["stats"], read["stats"]]
        rejected = [read["rejected"]]
        documents = read["documents"]
        if plan.contamination:
            clean = documents | "Decontaminate" >> Decontaminate(plan.contamination, plan.contamination_ngram)
            documents = clean["documents"]
            rejected.append(clean["rejected"])
            stats.append(clean["stats"])
        if plan.near_dedup is not None:
            # Before the split, so a near-copy can never be in another split than its survivor.
            near = documents | "NearDedup" >> RemoveNearDuplicates(*plan.near_dedup)
            documents = near["documents"]
            stats.append(near["stats"])
            if plan.dedup_log:
                stats.append((documents, near["removed"]) | "DedupLog" >> WriteDedupLog(plan.dedup_log))
        eval_sets = None
        if plan.heldout_splits:
            assigned = documents | "Split" >> AssignSplits(plan.validation_fraction, plan.test_fraction)
            documents = assigned["documents"]
            stats.append(assigned["stats"])
            if plan.eval_examples_per_task:
                # From the test split where there is one, so validation can steer training unseen by it.
                source = TEST if plan.test_fraction else VALIDATION
                eval_sets = (documents
                             | "EvalDocuments" >> beam.Filter(lambda d, s=source: d.split == s)
                             | "EvalProblems" >> EvalProblems(plan.eval_examples_per_task, plan.seed, tokenizer,
                                                              plan.fim)
                             | "WriteEvalSets" >> WriteEvalSets(plan.output))
        tokenized = documents | "Tokenize" >> TokenizeDocuments(
            tokenizer, plan.tokenizer_threads, plan.tokenizer_processes)
        stats.append(tokenized["stats"])
        shards = []
        for split in [TRAIN, *plan.heldout_splits]:
            split_documents = tokenized["documents"]
            if split != TRAIN:
                split_documents = split_documents | f"{split.title()}/Select" >> beam.Filter(
                    lambda d, s=split: d.split == s)
            elif plan.heldout_splits:
                split_documents = split_documents | "SelectTrain" >> beam.Filter(lambda d: d.split == TRAIN)
            written, split_stats = self._build_split(split_documents, split, tokenizer)
            shards += written
            stats += split_stats
        error_shards = tuple(rejected) | "Rejected" >> beam.Flatten() | "WriteRejected" >> WriteRejected(
            plan.output, plan.num_shards)
        merged = tuple(stats) | "MergeStats" >> MergeStats()
        return merged | "WriteMetadata" >> WriteMetadata(
            plan.output, static_metadata(plan), plan.max_error_fraction, tuple(shards) | "AllShards" >> beam.Flatten(),
            error_shards, dict(input_stats(plan.files)), self._run_id, eval_sets)

    def _build_split(self, documents, split: str, tokenizer: TokenizerHandle) -> tuple[list, list]:
        """One split's examples from its tokenized documents: repositories, shuffle, then pack, FIM and
        shards per bucket (a held-out split's once per held-out FIM rate); its shards and its statistics,
        those of a held-out split under ``SPLIT_PREFIX`` + its name."""
        plan = self._plan
        label = "" if split == TRAIN else f"{split.title()}/"
        stats = []
        if plan.repository is not None:
            repositories = documents | f"{label}Repositories" >> GroupRepositories(tokenizer,
                                                                                   plan.repository_budget)
            documents = repositories["documents"]
            stats.append(repositories["stats"])
        if plan.fim.level == "document":
            document_fim = documents | f"{label}DocumentFim" >> ApplyDocumentFim(tokenizer, plan.seed, plan.fim)
            documents = document_fim["documents"]
            stats.append(document_fim["stats"])
        num_shards = plan.split_num_shards(split)
        shuffled = documents | f"{label}Shuffle" >> ShuffleDocuments(plan.seed, num_shards, plan.dedup)
        stats.append(shuffled["stats"])
        prefix = "" if split == TRAIN else f"{SPLIT_PREFIX}{split}/"
        if split != TRAIN:
            # The shuffle and packing count under the split's name, each copy's FIM under its own.
            stats = [s | f"{label}Stats{i}" >> beam.Map(prefixed, prefix) for i, s in enumerate(stats)]
        copies = (ShardCopy(TRAIN, plan.fim),) if split == TRAIN else tuple(
            ShardCopy(split + suffix, dataclasses.replace(plan.fim, rate=rate), f"{SPLIT_PREFIX}{split + suffix}/")
            for suffix, rate in plan.heldout_rates.items())
        reserve = plan.repository_reserve if plan.repository is not None else 0
        written = shuffled["buckets"] | f"{label}Shards" >> WriteShards(
            plan.output, num_shards, plan.seed, copies, tokenizer, plan.tokenizer.special.eot, reserve, prefix,
            plan.output_formats, plan.tokenizer_processes)
        stats.append(written["stats"])
        return [written["shards"]], stats
