"""Writing files whole, under temporary names renamed when complete; and shard file names.

For every stage that writes files (``transforms.write``, ``transforms.shards``
and its sinks): a full disk, a kill or a failed bundle leaves at most
temporary files, whose names begin ``TEMPORARY_PREFIX``; the next run removes
them. A shard of several files (Megatron's ``.bin`` and ``.idx``) has each
file renamed only once all of them are complete.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import uuid
from typing import BinaryIO, Callable, NamedTuple

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

logger = logging.getLogger(__name__)
TEMPORARY_PREFIX = ".tmp-"


class ShardName(NamedTuple):
    """``PREFIX-SSSSS-of-NNNNN.SUFFIX``: the name of every shard file fimflow writes, made and read here only.

    ``prefix`` may hold directories (``errors/rejected``); ``suffix`` begins
    with a dot and may hold several (``.segment.bin``)."""

    prefix: str
    shard: int
    num_shards: int
    suffix: str

    _PATTERN = re.compile(r"^(?P<prefix>.+)-(?P<shard>\d{5,})-of-(?P<num_shards>\d{5,})(?P<suffix>\..*)$")

    def __str__(self) -> str:
        return f"{self.prefix}-{self.shard:05d}-of-{self.num_shards:05d}{self.suffix}"

    @classmethod
    def parse(cls, path: str) -> "ShardName":
        """The parts of a shard file's path; ``ValueError`` for a name fimflow does not write."""
        match = cls._PATTERN.match(path)
        if not match:
            raise ValueError(f"not a shard file name: {path!r}")
        return cls(match["prefix"], int(match["shard"]), int(match["num_shards"]), match["suffix"])

    def with_suffix(self, suffix: str) -> "ShardName":
        return self._replace(suffix=suffix)

    @property
    def base_name(self) -> str:
        """The file name of the prefix alone, without directories: ``train``, ``validation_ar``."""
        return self.prefix.rsplit("/", 1)[-1]


class AtomicFiles:
    """Files written under temporary names beside their final ``paths`` and renamed there together.

    ``open(path)`` gives a file object on any Beam filesystem; ``local_path(path)``
    a local file name, for libraries that write only to a path (ArrayRecord),
    copied to the filesystem when committed. ``commit()`` closes, copies and
    renames everything; ``abort()`` (or an exception inside ``with``) removes it.
    """

    def __init__(self):
        self._temporaries: dict[str, str] = {}
        self._open: list[BinaryIO] = []
        self._staged: dict[str, str] = {}

    def _temporary(self, path: str) -> str:
        if path in self._temporaries:
            raise ValueError(f"{path} is already open")
        directory, name = FileSystems.split(path)
        self._temporaries[path] = FileSystems.join(directory, f"{TEMPORARY_PREFIX}{name}-{uuid.uuid4().hex}")
        return self._temporaries[path]

    def open(self, path: str, mime_type: str = "application/octet-stream") -> BinaryIO:
        f = FileSystems.create(self._temporary(path), mime_type=mime_type,
                               compression_type=CompressionTypes.UNCOMPRESSED)
        self._open.append(f)
        return f

    def local_path(self, path: str) -> str:
        temporary = self._temporary(path)
        if "://" not in temporary:
            # As ``open`` (Beam's local filesystem) does: a library given a path does not make its folder.
            os.makedirs(os.path.dirname(temporary) or ".", exist_ok=True)
            return temporary
        descriptor, staged = tempfile.mkstemp(prefix=TEMPORARY_PREFIX)
        os.close(descriptor)
        self._staged[temporary] = staged
        return staged

    def commit(self) -> list[str]:
        """Every file complete under its final name; returns the final paths, in the order opened."""
        for f in self._open:
            f.close()
        self._open = []
        for temporary, staged in list(self._staged.items()):
            with open(staged, "rb") as source, FileSystems.create(
                    temporary, compression_type=CompressionTypes.UNCOMPRESSED) as target:
                shutil.copyfileobj(source, target, 1 << 22)
            os.unlink(staged)
            del self._staged[temporary]
        finals = list(self._temporaries)
        FileSystems.rename([self._temporaries[p] for p in finals], finals)
        self._temporaries = {}
        return finals

    def abort(self) -> None:
        for f in self._open:
            try:
                f.close()
            except Exception:  # The storage is failing: the next run removes what is left.
                logger.debug("could not close %s", f, exc_info=True)
        for staged in self._staged.values():
            if os.path.exists(staged):
                os.unlink(staged)
        for temporary in self._temporaries.values():
            try:
                FileSystems.delete([temporary])
            except Exception:  # Never created, or the storage is failing too: the next run removes it.
                logger.debug("could not remove %s", temporary, exc_info=True)
        self._open, self._staged, self._temporaries = [], {}, {}

    def __enter__(self) -> "AtomicFiles":
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is not None:
            self.abort()


def write_atomically(path: str, write: Callable, mime_type: str = "application/octet-stream"):
    """Runs ``write(f)`` on a temporary file beside ``path``, then renames it to ``path``; returns its result."""
    with AtomicFiles() as files:
        result = write(files.open(path, mime_type))
        files.commit()
    return result
