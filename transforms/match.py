"""Finding the input files, on the launcher to plan and on the workers to read.

In: an ``InputSelection`` (patterns, include and exclude globs). Out:
``InputFile`` (path, size, modification time), each file once.

The launcher matches to plan (input size sets the bucket and shard counts)
and to fail early on a pattern that matches nothing; the job graph holds only
the patterns, and the workers match them again with the same function, so a
200k-file corpus is not baked into the job. What the workers found must be
what was planned: the count, the bytes and an order-free fingerprint of every
(path, size, modification time) are counted as statistics (``input_stats``),
which ``transforms.write`` compares with the plan's before ``metadata.json``.

A local directory means every regular file under it, symbolic links to files
and folders followed, each folder once; anything else is a glob for Beam's
``FileSystems`` (local, ``gs://``, any registered filesystem), a trailing
``/`` meaning everything under it.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import stat
from typing import Iterable, Iterator

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from transforms.core.hashing import file_fingerprint
from transforms.schema import (INPUT_BYTES, INPUT_FILES, INPUT_FINGERPRINT, SOURCE_PREFIX, InputFile, InputSelection,
                               Stats)
from transforms.stats import StepWithStats

logger = logging.getLogger(__name__)


def local_tree(directory: str) -> tuple[list[InputFile], list[str]]:
    """Regular files under a local ``directory``, symbolic links to files and folders followed.

    A folder reached twice through links (a loop) is walked once. Anything
    that is not a regular file (a FIFO, a socket, a device, a broken link) is
    returned as skipped, never opened: reading a FIFO would wait forever.
    """
    files, skipped, walked = [], [], set()
    for root, dirs, names in os.walk(directory, followlinks=True):
        real = os.path.realpath(root)
        if real in walked:
            dirs[:] = []
            continue
        walked.add(real)
        dirs.sort()
        for name in sorted(names):
            path = os.path.join(root, name)
            try:
                info = os.stat(path)
            except OSError:
                skipped.append(path)
                continue
            if stat.S_ISREG(info.st_mode):
                files.append(InputFile(path, info.st_size, info.st_mtime, directory))
            else:
                skipped.append(path)
    return files, skipped


def is_local_directory(pattern: str) -> bool:
    return not any(c in pattern for c in "*?[") and "://" not in pattern and os.path.isdir(pattern)


def match_pattern(pattern: str, selection: InputSelection) -> tuple[list[InputFile], int]:
    """The files ``pattern`` matches that the selection's include/exclude globs keep, and how many
    it matched before them. Raises what the filesystem raises for a pattern it cannot list."""
    if is_local_directory(pattern):
        found, skipped = local_tree(pattern)
        if skipped:
            logger.warning("--input %s: skipped %d file(s) that are not regular files, e.g. %s",
                           pattern, len(skipped), skipped[0])
    else:
        result = FileSystems.match([pattern + "**" if pattern.endswith("/") else pattern])[0]
        found = [InputFile.from_metadata(m, pattern) for m in result.metadata_list if not m.path.endswith("/")]
    kept = [f for f in found
            if (not selection.include or any(fnmatch.fnmatch(f.path, g) for g in selection.include))
            and not any(fnmatch.fnmatch(f.path, g) for g in selection.exclude)]
    return kept, len(found)


def input_stats(files: Iterable[InputFile]) -> Stats:
    """The statistics the workers' matching must reproduce: count, bytes, fingerprint."""
    stats = Stats()
    for file in files:
        stats[INPUT_FILES] += 1
        stats[INPUT_BYTES] += file.size
        stats[INPUT_FINGERPRINT] += file_fingerprint(file.path, file.size, file.mtime)
        stats[f"{SOURCE_PREFIX}pattern/{file.pattern}/input_files"] += 1
        stats[f"{SOURCE_PREFIX}pattern/{file.pattern}/input_bytes"] += file.size
    return stats


class InputListingError(IOError):
    """A worker could not list an ``--input`` pattern: the bundle fails, so the runner retries it."""


def _match(pattern: str, selection: InputSelection) -> list[InputFile]:
    # A pattern that now lists fewer files selects fewer: the fingerprint check
    # reports that. One that cannot be listed at all (the storage failing)
    # fails the bundle, so that a passing fault is retried.
    try:
        return match_pattern(pattern, selection)[0]
    except Exception as e:  # Each filesystem raises its own; Beam wraps them in BeamIOError.
        raise InputListingError(f"--input {pattern}: listing it failed on a worker ({type(e).__name__}: {e}); "
                                "was it deleted after the run was planned, or is the storage failing?") from e


class CountInputStep:
    """An ``InputFile`` -> itself, counted by ``input_stats``."""

    def __call__(self, file: InputFile, stats: Stats) -> Iterator[InputFile]:
        stats.update(input_stats([file]))
        yield file


class MatchInputs(beam.PTransform):
    """``PBegin`` -> ``{'files': PCollection[InputFile], 'stats': PCollection[Stats]}``: each selected
    file once (two patterns may match the same file), counted by ``input_stats``."""

    def __init__(self, selection: InputSelection):
        super().__init__()
        self._selection = selection

    def expand(self, pbegin):
        return (pbegin
                | "Patterns" >> beam.Create(sorted(set(self._selection.patterns)))
                | "Match" >> beam.FlatMap(_match, self._selection).with_output_types(InputFile)
                # Keyed by the path's bytes: Beam codes str keys as strict UTF-8, and a file name need not be.
                | "KeyByFile" >> beam.Map(lambda f: ((f.path.encode("utf-8", "surrogateescape"), f.size, f.mtime), f))
                | "EachFileOnce" >> beam.GroupByKey()
                # The first pattern that selected it, whatever order the runner delivers them in.
                | "First" >> beam.MapTuple(lambda _, same: min(same, key=lambda f: f.pattern))
                .with_output_types(InputFile)
                | "Count" >> StepWithStats("read", CountInputStep(), "files",
                                           input_type=InputFile, output_type=InputFile))
