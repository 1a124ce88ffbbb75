"""Writing a file whole: under a temporary name beside it, renamed when complete; and shard names.

For every stage that writes files (``transforms.write``, ``transforms.shards``):
a full disk, a kill or a failed bundle leaves at most a temporary file, whose
name begins ``TEMPORARY_PREFIX``; the next run removes it.
"""

from __future__ import annotations

import logging
import uuid
from typing import Callable

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

logger = logging.getLogger(__name__)
TEMPORARY_PREFIX = ".tmp-"


def write_atomically(path: str, write: Callable, mime_type: str = "application/octet-stream"):
    """Runs ``write(f)`` on a temporary file beside ``path``, then renames it to ``path``; returns its result."""
    directory, name = FileSystems.split(path)
    temporary = FileSystems.join(directory, f"{TEMPORARY_PREFIX}{name}-{uuid.uuid4().hex}")
    try:
        with FileSystems.create(temporary, mime_type=mime_type,
                                compression_type=CompressionTypes.UNCOMPRESSED) as f:
            result = write(f)
        FileSystems.rename([temporary], [path])
    except BaseException:
        try:
            FileSystems.delete([temporary])
        except Exception:  # Never created, or the storage is failing too: the next run removes it.
            logger.debug("could not remove %s", temporary, exc_info=True)
        raise
    return result


def shard_path(prefix: str, shard: int, num_shards: int, suffix: str) -> str:
    return f"{prefix}-{shard:05d}-of-{num_shards:05d}{suffix}"
