"""The record-sink seam: what every output format implements, and the layout it is given.

A ``RecordSink`` is made for one shard, is given that shard's examples one at
a time in their final order, and is closed. It writes only through the
``AtomicFiles`` it is given, so every file it makes (a format may make
several: Megatron's ``.bin`` and ``.idx``) appears under its final name only
once all of them are complete, like every other file fimflow writes.

A sink also reads its files back, for ``fimflow inspect``, the report and the
tests: as serialized ``tf.train.Example``s for formats that hold them
(``holds_examples``), else as feature arrays.
"""

from __future__ import annotations

import abc
from typing import ClassVar, Iterator, NamedTuple, Optional

import numpy as np

from transforms.files import AtomicFiles, ShardName
from transforms.schema import Example


class SinkLayout(NamedTuple):
    """What a format needs to know of the dataset besides the examples."""

    context_length: int
    vocab_size: int


class RecordSink(abc.ABC):
    """One shard of one output format: ``write`` each example, then ``close``.

    ``suffixes``: the files of a shard, the main one (listed in metadata.json) first.
    ``extra``: the ``setup.py`` extra its library comes from, if any.
    ``holds_examples``: its records are serialized ``tf.train.Example``s, given to ``write`` as ``record``.
    """

    name: ClassVar[str]
    suffixes: ClassVar[tuple[str, ...]]
    extra: ClassVar[Optional[str]] = None
    holds_examples: ClassVar[bool] = False
    reading: ClassVar[str]

    def __init__(self, files: AtomicFiles, shard: ShardName, layout: SinkLayout):
        self._files = files
        self._shard = shard
        self._layout = layout

    def path(self, suffix: str) -> str:
        """The final path of this shard's file with ``suffix``."""
        return str(self._shard.with_suffix(suffix))

    @abc.abstractmethod
    def write(self, example: Example, record: Optional[bytes]) -> None:
        """Adds one example; ``record`` is its serialized ``tf.train.Example`` when ``holds_examples``."""

    def close(self) -> None:
        """Writes what only the whole shard knows (an index, a footer). The files are committed after."""

    @classmethod
    def read_records(cls, path: str) -> Iterator[bytes]:
        """The serialized ``tf.train.Example``s of the shard whose main file is ``path``."""
        raise NotImplementedError(f"{cls.name} files hold no tf.train.Example records")

    @classmethod
    def read_features(cls, path: str, layout: SinkLayout) -> Iterator[dict[str, np.ndarray]]:
        """The feature arrays of each example of the shard whose main file is ``path``."""
        raise NotImplementedError(f"{cls.name} files hold serialized examples: use read_records")
