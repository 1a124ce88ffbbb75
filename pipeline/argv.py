"""Checking a ``fimflow run`` command line before Beam parses it.

Beam drops flags it does not know with a log line, so the run would go on
with the defaults the user meant to change, and argparse answers a bad value
with its whole usage text. ``checked_argv`` knows every flag that any options
class declares (Beam's and fimflow's, collected through the same
``_add_argparse_args`` hook that Beam's parser uses) and turns each problem
into one ``UsageError`` line.
"""

from __future__ import annotations

from typing import Optional

from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.flags import UsageError, parse_bool

# Flags of earlier versions, and what replaced them.
REMOVED_OPTIONS = {"--num_buckets": " (merged into --num_shards: each shard is one shuffle bucket)"}
# Beam's flags that choose how a local run runs; a command line naming neither lets fimflow choose.
LOCAL_MODE_FLAGS = ("--direct_running_mode", "--direct_num_workers")


def names_local_mode(argv: list[str]) -> bool:
    """Whether a checked command line names a local running mode itself."""
    return any(a.split("=")[0] in LOCAL_MODE_FLAGS for a in argv)


class _FlagCollector:
    """Stands in for the parser in ``PipelineOptions._add_argparse_args``: records each flag and its settings.

    ``_add_argparse_args`` is how every options class, Beam's and fimflow's,
    declares its flags; collecting them lets fimflow check a command line
    without parsing it the way Beam does, which drops what it does not know.
    """

    def __init__(self):
        self.flags: dict = {}

    def add_argument(self, *names, **settings):
        for name in names:
            self.flags[name] = settings

    add_value_provider_argument = add_argument

    def add_mutually_exclusive_group(self, **settings):
        """Groups (Beam's DaskOptions uses one) declare their flags on the collector itself."""
        return self

    add_argument_group = add_mutually_exclusive_group


def _options_classes(cls=PipelineOptions):
    for sub in cls.__subclasses__():
        yield sub
        yield from _options_classes(sub)


def declared_flags(classes=None) -> dict:
    """``--flag`` -> its argparse settings, for every flag the options classes declare."""
    collector = _FlagCollector()
    for cls in (classes or set(_options_classes())):
        cls._add_argparse_args(collector)
    return collector.flags


def _takes_value(settings: dict) -> Optional[bool]:
    """True: the flag needs a value; None: a value is optional; False: it takes none."""
    if settings.get("action") in ("store_true", "store_false", "store_const", "append_const", "count"):
        return False
    return None if settings.get("nargs") == "?" else True


def _check_value(name: str, value: str, settings: dict) -> None:
    """Raises ``UsageError`` (one line) for a value argparse would refuse with the whole usage text."""
    convert = settings.get("type")
    if convert is not None:
        try:
            value = convert(value)
        except (TypeError, ValueError):
            kind = {int: "a whole number", float: "a number", parse_bool: "true or false"}.get(convert, "valid")
            raise UsageError(f"{name} {value!r}: not {kind}") from None
    choices = settings.get("choices")
    if choices and value not in choices:
        raise UsageError(f"{name} {value!r}: choose one of {', '.join(map(str, choices))}")


def checked_argv(argv: list[str]) -> list[str]:
    """``argv`` with dashed spellings of known flags (``--context-length``) in their declared form.

    Raises ``UsageError`` for a flag that no options class declares, a value
    its flag refuses, or a stray argument: Beam would drop unknown flags with
    a log line, and the run would go on with the defaults the user meant to
    change; argparse would print its whole usage text for a bad value.
    """
    flags = declared_flags()
    checked, i = [], 0
    while i < len(argv):
        token = argv[i]
        name, equals, value = token.partition("=")
        if not token.startswith("-") or token == "--":
            raise UsageError(f"unexpected argument {token!r}: every option is --name value or --name=value")
        if name not in flags and "--" + name.lstrip("-").replace("-", "_") in flags:
            name = "--" + name.lstrip("-").replace("-", "_")
        if name not in flags:
            raise UsageError(f"unknown option {name}{REMOVED_OPTIONS.get(name, '')} (see fimflow run --help)")
        checked.append(name + equals + value)
        takes = _takes_value(flags[name])
        if not equals and i + 1 < len(argv) and (takes or (takes is None and not argv[i + 1].startswith("-"))):
            value = argv[i + 1]
            checked.append(value)
            equals = "="
            i += 1
        if equals and takes is not False:
            _check_value(name, value, flags[name])
        i += 1
    return checked


def unknown_options(options: PipelineOptions) -> list[str]:
    known = options.get_all_options(retain_unknown_options=False)
    every = options.get_all_options(retain_unknown_options=True)
    return sorted(k for k in every if k not in known)
