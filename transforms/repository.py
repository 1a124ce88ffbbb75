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

from transforms.core.repository import repository_parts
from transforms.core.tokenizer import TokenizerHandle
from transforms.schema import Stats, TokenizedDocument, token_dtype
from transforms.stats import StepWithStats


def part_hash(repo: str, index: int, files: list[TokenizedDocument]) -> bytes:
    """A part's identity: its repository, its number and its files' contents, in order."""
    h = hashlib.blake2b(digest_size=16, person=b"fimflow-repo")
    h.update(repo.encode("utf-8", "surrogatepass") + b"\0" + index.to_bytes(8, "little"))
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
        files = sorted(files, key=lambda f: (f.path, f.content_hash))
        name = np.asarray(self._tokenizer.encode_documents_fast([repo])[0], dtype=self._dtype)
        parts = repository_parts(name, [f.ids for f in files], self._budget, self._tokenizer.special)
        stats["repositories"] += 1
        stats["repository_files"] += len(files)
        header = len(name) + 1 + (self._tokenizer.special.bos is not None)
        stats["repository_files_longer_than_a_context"] += sum(header + 1 + len(f.ids) > self._budget
                                                               for f in files)
        # Which files each part holds, to name it: parts take files in order.
        start = 0
        for index, part in enumerate(parts):
            count = int(np.count_nonzero(part == self._tokenizer.special.file_sep))
            stats["repository_parts"] += 1
            yield TokenizedDocument(part_hash(repo, index, files[start:start + count]), part)
            start += count


class GroupRepositories(beam.PTransform):
    """``PCollection[TokenizedDocument]`` (files) -> ``{'documents': PCollection[TokenizedDocument]
    (repository parts), 'stats': PCollection[Stats]}``. ``budget``: ids per part, ``<eot>`` excluded."""

    def __init__(self, tokenizer: TokenizerHandle, budget: int):
        super().__init__()
        self._step = RepositoryStep(tokenizer, budget)

    def expand(self, files):
        return (files
                | "KeyByRepository" >> beam.Map(lambda f: (f.repo, f))
                | "GroupRepository" >> beam.GroupByKey()
                | "Parts" >> StepWithStats("repository", self._step, "documents", output_type=TokenizedDocument))
