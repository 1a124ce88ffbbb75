"""Which split a document (or a repository) belongs to: a keyed hash of its identity, never the seed.

A document's identity is its content hash; a repository's, its name. The
hash is mapped to [0, 1): below ``validation`` is validation, below
``validation + test`` is test, the rest train. It does not depend on
``--seed`` or on the rest of the corpus, so a document stays in its split
when the seed changes or the corpus grows, and identical documents always
share one.
"""

from __future__ import annotations

import hashlib

TRAIN, VALIDATION, TEST = "train", "validation", "test"
SPLITS = (TRAIN, VALIDATION, TEST)
HELDOUT_SPLITS = (VALIDATION, TEST)
# A held-out split is written twice by default: at the run's FIM rate (its own name) and without FIM
# (this suffix), for a FIM loss and an autoregressive loss.
AUTOREGRESSIVE_SUFFIX = "_ar"
# Every file prefix a dataset's examples may have: each split, and each held-out copy.
EXAMPLE_PREFIXES = (TRAIN, *(split + suffix for split in HELDOUT_SPLITS for suffix in ("", AUTOREGRESSIVE_SUFFIX)))


def split_point(identity: bytes) -> float:
    """Where ``identity`` falls in [0, 1)."""
    digest = hashlib.blake2b(identity, digest_size=8, person=b"fimflow-split").digest()
    return int.from_bytes(digest, "little") / 2.0 ** 64


def split_of(identity: bytes, validation: float, test: float) -> str:
    point = split_point(identity)
    return VALIDATION if point < validation else TEST if point < validation + test else TRAIN
