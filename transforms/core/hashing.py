"""Every hash that decides where data goes: identity, shuffle order, FIM draws, shards.

All are BLAKE2b, so they are the same on every platform, Python version and
run. Each one's input encoding is part of the dataset format: changing it
changes the bytes of every dataset built with the same seed (the golden test
pins them), so they stay exactly as first released.
"""

from __future__ import annotations

import hashlib
import random

# Documents are hashed in slices so one of hundreds of MB is never encoded whole.
_HASH_SLICE_CHARS = 1 << 20


def _digest64(data: bytes, key: bytes = b"") -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8, key=key).digest(), "little")


def content_hash(text: str) -> bytes:
    """A document's identity: 16 bytes of BLAKE2b over its UTF-8 text."""
    h = hashlib.blake2b(digest_size=16)
    for start in range(0, len(text), _HASH_SLICE_CHARS):
        h.update(text[start:start + _HASH_SLICE_CHARS].encode("utf-8", errors="surrogatepass"))
    return h.digest()


def document_identity(text: str, path=None) -> bytes:
    """The identity of a document as it is tokenized: its text, or a repository file's ``PATH\n`` and text."""
    return content_hash(text if path is None else f"{path}\n{text}")


def shuffle_key(seed: int, content: bytes) -> int:
    """A document's position in the shuffled corpus: its content hash keyed by the seed."""
    return _digest64(content, key=seed.to_bytes(16, "little", signed=True))


def seeded_rng(*identity) -> random.Random:
    """A random generator seeded by ``identity`` (the run seed and the data's identity)."""
    return random.Random(_digest64(repr(identity).encode()))


def shard_key(seed: int, bucket: int, index: int) -> int:
    """Where an example goes: shard ``key % num_shards``, ordered by ``key`` inside it."""
    return _digest64(f"shard:{seed}:{bucket}:{index}".encode())


def rejected_shard_key(source: bytes, position: int) -> int:
    """Which dead-letter shard a rejected record goes to: ``key % num_shards``."""
    return _digest64(b"rejected:" + source + b"\0" + str(position).encode())


def file_fingerprint(path: str, size: int, mtime) -> int:
    """A 31-bit digest of a file's identity. Summed over files it does not depend on their order,
    and the sum over 2**32 files still fits the 64-bit Beam counter it is also published as."""
    return _digest64(f"{path}\0{size}\0{mtime!r}".encode("utf-8", "surrogateescape")) >> 33
