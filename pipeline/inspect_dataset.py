"""``fimflow inspect``: examples shown the way a person checks FIM data.

Each segment is printed on its own; a FIM segment shows its prefix, middle
and suffix in document order with the middle marked, plus its order (PSM or
SPM), so one can see at a glance that the three parts make up one text.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import sys
from typing import NamedTuple, Optional, TextIO

from apache_beam.io.filesystems import FileSystems

from pipeline.extras import require_extra
from transforms.core.fim_format import DEFAULT_FORMAT, FimFormat, fim_format
from transforms.core.segments import parse_repository_segment, parse_segment
from transforms.core.tokenizer import SpecialTokenNames, Tokenizer, load_tokenizer
from transforms.core.splits import TRAIN
from transforms.files import ShardName
from transforms.schema import METADATA_FILE
from transforms.sinks import DEFAULT_OUTPUT_FORMAT, SinkLayout, output_sink
from transforms.write import output_formats

_STYLES = {"middle": "\033[1;30;43m", "label": "\033[1;36m", "sentinel": "\033[35m", "reset": "\033[0m"}


def _style(text: str, style: str, color: bool) -> str:
    return f"{_STYLES[style]}{text}{_STYLES['reset']}" if color else text


def _import_tensorflow_quietly():
    """``import tensorflow``, with the C++ notes it prints at start-up (oneDNN, CPU features,
    absl's "before InitializeLog") kept off the user's terminal: they go to stderr's file
    descriptor directly, past Python, so it points at /dev/null for the import."""
    import os

    require_extra("tf")
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        import tensorflow as tf
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    return tf


def read_examples(output: str, limit: Optional[int] = None, split: str = TRAIN,
                  output_format: Optional[str] = None) -> list[dict]:
    """Examples of a dataset's ``split`` (``train``, ``validation``, ``validation_ar``...) as a trainer
    gets them, lists of ids per feature: ``tf.train.Example``s parsed by TensorFlow (read by ``tf.data``
    from local TFRecords), other formats by their own readers. ``output_format``: one the dataset was
    written in (default: its first)."""
    return list(iter_examples(output, limit, split, output_format))


def iter_examples(output: str, limit: Optional[int] = None, split: str = TRAIN,
                  output_format: Optional[str] = None):
    """``read_examples``, one at a time."""
    metadata = load_metadata(output)
    written = output_formats(metadata)
    output_format = output_format or written[0]
    if output_format not in written:
        raise ValueError(f"{output} holds no {output_format} files; it was written as {', '.join(written)}")
    sink = output_sink(output_format)
    files = [FileSystems.join(output, entry["path"]) for entry in metadata["files"]
             if ShardName.parse(entry["path"]).prefix == split
             and entry.get("format", DEFAULT_OUTPUT_FORMAT) == output_format]
    if not sink.holds_examples:
        layout = SinkLayout(metadata["context_length"], metadata["vocab_size"])
        features = (example for path in files for example in sink.read_features(path, layout))
        for example in itertools.islice(features, limit):
            yield {name: example[name].tolist() for name in metadata["features"]}
        return
    tf = _import_tensorflow_quietly()
    length = metadata["context_length"]
    spec = {name: tf.io.FixedLenFeature([length], tf.int64) for name in metadata["features"]}
    if output_format == DEFAULT_OUTPUT_FORMAT and all("://" not in path for path in files):
        records = tf.data.TFRecordDataset(files)
    else:
        # TensorFlow's own gs:// client ignores STORAGE_EMULATOR_HOST and knows only some of Beam's
        # filesystems, and reads no other container: the sink reads the records, TensorFlow parses them.
        records = tf.data.Dataset.from_generator(
            lambda: itertools.islice((r for path in files for r in sink.read_records(path)), limit),
            output_signature=tf.TensorSpec([], tf.string))
    dataset = records.map(lambda r: tf.io.parse_single_example(r, spec))
    if limit is not None:
        dataset = dataset.take(limit)
    for example in dataset.as_numpy_iterator():
        yield {k: v.tolist() for k, v in example.items()}


def load_metadata(output: str) -> dict:
    with FileSystems.open(FileSystems.join(output, METADATA_FILE)) as f:
        return json.load(f)


class SegmentParts(NamedTuple):
    """A segment as a reader sees it: ``pieces`` (kind, ids) in document order, kinds ``plain``,
    ``prefix``, ``middle``, ``suffix`` or ``prefix+middle`` (SPM, whose tokens do not mark that
    boundary); ``cut``: the context ended inside it."""

    label: str
    pieces: list
    eot: bool
    cut: bool


def dataset_format(metadata: dict) -> FimFormat:
    return fim_format(metadata.get("fim", {}).get("format", DEFAULT_FORMAT))


def _content_pieces(part) -> tuple[str, list]:
    """A FIM segment's label and ``(kind, ids)`` pieces in document order."""
    if part.mode == "plain":
        return "plain", [("plain", part.prefix)]
    if part.mode == "spm":
        return ("SPM: suffix first, then prefix and middle as one run",
                [("prefix+middle", part.middle), ("suffix", part.suffix)])
    label = "PSM" if part.mode == "psm" else "FIM, cut by the context end before its middle"
    return label, [(kind, p) for kind, p in (("prefix", part.prefix), ("middle", part.middle),
                                             ("suffix", part.suffix)) if p or kind == "middle"]


def segment_parts(ids: list, special, fmt: FimFormat) -> SegmentParts:
    """A segment as a reader sees it; a repository's segment lists its files, ``separator`` pieces
    (the id of ``<repo_name>`` or of the file separator) before its name and between them."""
    if special.file_sep is not None:
        repo = parse_repository_segment(ids, special, fmt)
        lead = repo.lead
        named = lead.index(special.repo_name) + 1 if special.repo_name in lead else 0
        pieces, fim = [("separator", lead[named - 1:named]), ("plain", lead[named:])] if named else [
            ("plain", lead)], []
        for file in repo.files:
            label, content = _content_pieces(file.content)
            if file.content.mode != "plain":
                fim.append(label.split(":")[0])
            pieces += [("separator", [special.file_sep]), ("plain", file.header), *content]
        label = (f"repository part, {len(repo.files)} file(s)" + (f", FIM in one ({fim[0]})" if fim else "")
                 if repo.files else "the rest of a repository's file that the context before cut")
        return SegmentParts(label, pieces, repo.eot, not repo.eot)
    part = parse_segment(ids, special, fmt)
    label, pieces = _content_pieces(part)
    return SegmentParts(label, pieces, part.eot, part.mode != "plain" and not part.eot)


def _text(tokenizer: Tokenizer, ids: list) -> str:
    return tokenizer.surface(ids).decode("utf-8", errors="replace")


def _raw_text(tokenizer: Tokenizer, ids: list, names: dict, color: bool) -> str:
    """The tokens in the order the model sees them, special tokens by their piece names."""
    shown, run = [], []
    for t in ids + [None]:
        if t is None or t in names:
            if run:
                shown.append(_text(tokenizer, run))
                run = []
            if t is not None:
                shown.append(_style(names[t], "sentinel", color))
        else:
            run.append(t)
    return "".join(shown)


def inspect_dataset(output: str, n: int, tokenizer_path: Optional[str], color: bool, out: TextIO,
                    skip: int = 0, only: Optional[str] = None, raw: bool = False, split: str = TRAIN) -> int:
    """Prints ``n`` examples after ``skip``, of those with a FIM segment (``only='fim'``), with none
    (``'plain'``) or all; ``raw``: in token order with the special tokens written out."""
    metadata = load_metadata(output)
    path = tokenizer_path or metadata["tokenizer"]["path"]
    names = special_token_names(metadata)
    tokenizer = load_tokenizer(path, names)
    special = tokenizer.special
    fmt = dataset_format(metadata)
    piece_names = {i: tokenizer.special_pieces[role] for role, i in special.as_dict().items() if role != "pad"}
    label = lambda s: _style(s, "label", color)  # noqa: E731
    out.write(label(describe_format(metadata)))
    shown = 0
    for number, example in enumerate(iter_examples(output, split=split)):
        if shown >= n:
            break
        ids, segments = example["input_ids"], example["segment_ids"]
        parts = {seg: segment_parts([t for t, s in zip(ids, segments) if s == seg], special, fmt)
                 for seg in sorted(set(segments) - {0})}
        has_fim = any(part.label != "plain" for part in parts.values())
        if only and has_fim != (only == "fim"):
            continue
        if skip:
            skip -= 1
            continue
        shown += 1
        padding = segments.count(0)
        out.write(label(f"=== example {number} ({len(ids) - padding} tokens, {padding} padding) ===") + "\n")
        for seg, part in parts.items():
            seg_ids = [t for t, s in zip(ids, segments) if s == seg]
            out.write(label(f"--- segment {seg}: {part.label}, {len(seg_ids)} tokens ---") + "\n")
            if raw:
                out.write(_raw_text(tokenizer, seg_ids, piece_names, color) + "\n")
                continue
            text = ""
            for kind, piece in part.pieces:
                if kind == "separator":
                    text += _style(piece_names[piece[0]], "sentinel", color)
                    continue
                shown_text = _text(tokenizer, piece)
                text += _style("\u27e6" + shown_text + "\u27e7", "middle", color) \
                    if kind in ("middle", "prefix+middle") else shown_text
            end = _style("<eot>", "sentinel", color) if part.eot else (
                _style(" [cut by the context end]", "sentinel", color) if part.cut else "")
            out.write(text + end + "\n")
    return 0


def special_token_names(metadata: dict) -> SpecialTokenNames:
    """The pieces the dataset was made with: ``special_pieces``, or the options of a dataset from before it."""
    if "special_pieces" in metadata:
        return SpecialTokenNames(**{**dict.fromkeys(("fim_middle", "pad")), **metadata["special_pieces"]})
    options = metadata.get("options", {})
    defaults = SpecialTokenNames()
    return SpecialTokenNames(
        options.get("fim_prefix_token") or defaults.fim_prefix,
        options.get("fim_middle_token") or defaults.fim_middle,
        options.get("fim_suffix_token") or defaults.fim_suffix,
        options.get("pad_token") or defaults.pad,
        options.get("eot_token"))


def describe_format(metadata: dict) -> str:
    """One line per order: the format's name and its layout with the dataset's pieces."""
    fim = metadata.get("fim", {})
    layout = fim.get("layout") or fim_format(DEFAULT_FORMAT).describe(
        dataclasses.asdict(special_token_names(metadata)))
    bos = " (BOS first at each document start)" if metadata.get("bos") else ""
    spm_rate = fim.get("spm_rate", 0.5) if len(layout) > 1 else 1.0
    shares = {"psm": 1 - spm_rate, "spm": spm_rate} if len(layout) > 1 else {mode: 1.0 for mode in layout}
    return "".join(f"{fim.get('format', DEFAULT_FORMAT)} {mode.upper()} ({shares[mode]:.0%} of FIM examples): "
                   f"{' '.join(items)}{bos}\n" for mode, items in layout.items() if shares[mode] > 0)
