"""Output formats, one ``RecordSink`` (``transforms.sinks.base``) per module of this package.

Every module here but ``base`` defines ``SINK``, its sink class; a format is
found by the module's presence, so a new one is one new module (and its
test). ``--output_format`` takes any of ``OUTPUT_FORMATS``; several formats
are written from the same chunks in the same step (``transforms.shards``).
"""

from __future__ import annotations

import importlib
import pkgutil

from transforms.sinks.base import RecordSink, SinkLayout

DEFAULT_OUTPUT_FORMAT = "tfrecord"


def _sinks() -> dict[str, type[RecordSink]]:
    sinks = {}
    for module in pkgutil.iter_modules(__path__):
        if module.name != "base":
            sink = importlib.import_module(f"{__name__}.{module.name}").SINK
            sinks[sink.name] = sink
    return dict(sorted(sinks.items(), key=lambda item: (item[0] != DEFAULT_OUTPUT_FORMAT, item[0])))


OUTPUT_FORMATS: dict[str, type[RecordSink]] = _sinks()


def output_sink(name: str) -> type[RecordSink]:
    """The sink of format ``name``; ``ValueError`` naming the formats there are."""
    try:
        return OUTPUT_FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown output format {name!r}; one of: {', '.join(OUTPUT_FORMATS)}") from None


__all__ = ["DEFAULT_OUTPUT_FORMAT", "OUTPUT_FORMATS", "RecordSink", "SinkLayout", "output_sink"]
