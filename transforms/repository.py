"""Putting repositories together from their tokenized files (``--group_by repo``).

In: ``TokenizedDocument``s of files (``repo`` and ``path`` set). Out: one
``TokenizedDocument`` per *part* of each repository
(``transforms.core.repository.repository_parts``): its files in path order,
whole, as many as fit in a context with room for a FIM example's sentinels.
The shuffle that follows moves parts, so files of one repository stay
together. Statistics: repositories, repository_files, repository_parts,
repository_files_longer_than_a_context.
"""

from __future__ import annotations

import hashlib

import apache_beam as beam
import numpy as np

from transforms.core.compressed_ids import compressed, decompressed
from transforms.core.repository import repository_parts
from transforms.core.tokenizer import TokenizerHandle
from transforms.schema import Stats, TokenizedDocument, token_dtype
from transforms.stats import StepWithStats


def part_hash(files: list[TokenizedDocument]) -> bytes:
    """A part's identity: its files (paths and contents), in order. Not the repository's name, so
    that a fork's part identical to its upstream's is an exact duplicate."""
    h = hashlib.blake2b(digest_size=16, person=b"fimflow-repo")
    for f in files:
        h.update(f.content_hash)
    return h.digest()


class RepositoryStep:
    """``(repo, files)`` -> the repository's parts, in order."""

    def __init__(self, tokenizer: TokenizerHandle, budget: int):
        self._tokenizer_handle = tokenizer
        self._budget = budget

    def setup(self):
        self._tokenizer = self._tokenizer_handle.acquire()
        self._dtype = token_dtype(self._tokenizer.vocab_size)

    def __call__(self, repo_and_files, stats: Stats):
        repo, files = repo_and_files
        # Identical paths (a repository listed twice) are ordered by content, so the order is the data's.
        files = [decompressed(f) for f in sorted(files, key=lambda f: (f.path, f.content_hash))]
        name = np.asarray(self._tokenizer.encode_documents_fast([repo])[0], dtype=self._dtype)
        parts = repository_parts(name, [f.ids for f in files], self._budget, self._tokenizer.special)
        stats["repositories"] += 1
        stats["repository_files"] += len(files)
        header = len(name) + 1 + (self._tokenizer.special.bos is not None)
        stats["repository_files_longer_than_a_context"] += sum(header + 1 + len(f.ids) > self._budget
                                                               for f in files)
        # Which files each part holds, to name it: parts take files in order.
        start = 0
        for part in parts:
            count = int(np.count_nonzero(part == self._tokenizer.special.file_sep))
            stats["repository_parts"] += 1
            held = files[start:start + count]
            # A repository's files share its split (transforms.split assigns it by the name).
            yield TokenizedDocument(part_hash(held), part, text_bytes=sum(f.text_bytes for f in held),
                                    split=held[0].split)
            start += count


class GroupRepositories(beam.PTransform):
    """``PCollection[TokenizedDocument]`` (files) -> ``{'documents': PCollection[TokenizedDocument]
    (repository parts), 'stats': PCollection[Stats]}``. ``budget``: ids per part, ``<eot>`` excluded."""

    def __init__(self, tokenizer: TokenizerHandle, budget: int):
        super().__init__()
        self._step = RepositoryStep(tokenizer, budget)

    def expand(self, files):
        return (files
                # Compressed as in the shuffle: a local runner holds whatever is grouped in memory.
                | "KeyByRepository" >> beam.Map(lambda f: (f.repo, compressed(f)))
                | "GroupRepository" >> beam.GroupByKey()
                | "Parts" >> StepWithStats("repository", self._step, "documents", output_type=TokenizedDocument))
