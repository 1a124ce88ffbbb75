"""``fimflow report``: one self-contained HTML page showing what a dataset holds.

In: a dataset directory (local or any Beam filesystem, ``gs://`` included),
its ``metadata.json`` and a few of its examples. Out: an HTML file with its
plots embedded as PNG (it opens offline), or with ``--json`` the same numbers
as JSON. Every number in the page carries ``data-key``, its path in
``metadata.json``, so the page can be checked against the metadata.
"""

from __future__ import annotations

import base64
import html
import io
import json
from typing import Optional

from apache_beam.io.filesystems import FileSystems

from pipeline.inspect_dataset import (dataset_format, load_metadata, read_examples, segment_parts,
                                      special_token_names)
from transforms.core.tokenizer import Tokenizer, load_tokenizer

# Paths into metadata.json: a source's name may hold dots and slashes, so a path is a tuple.
SUMMARY = [
    ("documents", ("counts", "documents")), ("document tokens", ("counts", "document_tokens")),
    ("examples", ("counts", "examples")), ("context length", ("context_length",)),
    ("FIM rate requested", ("fim", "rate")), ("FIM rate observed", ("measured", "fim_rate_observed")),
    ("SPM share requested", ("fim", "spm_rate")), ("SPM share observed", ("measured", "spm_share_of_fim")),
    ("FIM share of tokens", ("measured", "fim_token_share")),
    ("padding tokens", ("counts", "padding_tokens")), ("padding share", ("measured", "padding_share")),
    ("trimmed tokens", ("counts", "trimmed_tokens")),
    ("records read", ("errors", "records_read")), ("records rejected", ("errors", "records_rejected")),
    ("identical copies removed", ("dedup", "removed")),
    ("near-duplicates removed", ("dedup", "near", "removed")), ("near-duplicate clusters", ("dedup", "near", "clusters")),
    ("near-duplicate text bytes saved", ("dedup", "near", "text_bytes_saved")),
]
HISTOGRAMS = [("Document length, tokens", ("measured", "document_tokens_histogram")),
              ("Fragment length, tokens", ("measured", "fragment_tokens_histogram")),
              ("Middle length (FIM fragments), tokens", ("measured", "middle_tokens_histogram")),
              ("Near-duplicate cluster size, documents", ("dedup", "near", "cluster_size_histogram"))]


def lookup(metadata: dict, path: tuple):
    """The value at ``path`` in ``metadata`` (0 where a count is absent)."""
    value = metadata
    for part in path:
        value = value.get(part, 0) if isinstance(value, dict) else 0
    return value


def report_numbers(metadata: dict) -> list[tuple[tuple, object]]:
    """Every number the page shows, with its path in ``metadata.json``."""
    paths = [path for _, path in SUMMARY]
    for _, path in HISTOGRAMS:
        paths += [path + (k,) for k in _bins(metadata, path)]
    for kind, by in metadata.get("sources", {}).items():
        paths += [("sources", kind, source, name) for source, counts in by.items() for name in counts]
    paths += [("errors", "by_reason", reason) for reason in metadata["errors"]["by_reason"]]
    return [(path, lookup(metadata, path)) for path in paths]


def _bins(metadata: dict, path: tuple) -> list:
    """A histogram's bins ("<=N") in order of N: metadata.json's keys are sorted as text."""
    return sorted(lookup(metadata, path) or {}, key=lambda k: int(k[2:]))


def numbers_as_json(metadata: dict) -> dict:
    """The page's numbers nested as in ``metadata.json``."""
    nested: dict = {}
    for path, value in report_numbers(metadata):
        node = nested
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return nested


def _number(value) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:.4f}" if isinstance(value, float) else str(value)


def _cell(metadata: dict, path: tuple) -> str:
    return f'<td class="n" data-key="{html.escape(json.dumps(list(path)))}">{_number(lookup(metadata, path))}</td>'


def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return f'<img alt="" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def _figures(metadata: dict) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures = []

    def bar(title, labels, values, horizontal=False, xlabel=""):
        figure, axes = plt.subplots(figsize=(6.4, 2.8 if not horizontal else 0.5 + 0.3 * max(len(labels), 2)))
        (axes.barh if horizontal else axes.bar)(range(len(values)), values, color="#4c72b0")
        (axes.set_yticks if horizontal else axes.set_xticks)(range(len(labels)), labels,
                                                            **({} if horizontal else {"rotation": 45}))
        if horizontal:
            axes.invert_yaxis()
        axes.set_title(title)
        axes.set_xlabel(xlabel)
        figures.append((title, _png(figure)))
        plt.close(figure)

    for title, path in HISTOGRAMS:
        bins = _bins(metadata, path)
        if bins:  # A run without --dedup near has no cluster sizes.
            bar(title, bins, [lookup(metadata, path + (k,)) for k in bins], xlabel=f"{title.split(', ')[-1]} (at most)")
    fim = metadata["fim"]
    measured = metadata["measured"]
    figure, axes = plt.subplots(figsize=(6.4, 2.8))
    x = range(2)
    axes.bar([i - 0.2 for i in x], [fim["rate"], fim["spm_rate"]], 0.4, label="requested", color="#999999")
    axes.bar([i + 0.2 for i in x], [measured["fim_rate_observed"], measured["spm_share_of_fim"]], 0.4,
             label="observed", color="#4c72b0")
    axes.set_xticks(list(x), ["FIM rate", "SPM share of FIM"])
    axes.set_ylim(0, 1)
    axes.legend()
    axes.set_title("FIM and SPM, requested and observed")
    figures.append(("FIM and SPM", _png(figure)))
    plt.close(figure)
    counts = metadata["counts"]
    bar("Tokens in examples", ["text", "padding", "trimmed away"],
        [counts.get("example_tokens", 0), counts.get("padding_tokens", 0), counts.get("trimmed_tokens", 0)],
        horizontal=True)
    for kind in ("language", "pattern"):
        by = metadata.get("sources", {}).get(kind, {})
        if by:
            bar(f"Tokens per {kind}", list(by), [c.get("tokens", 0) for c in by.values()], horizontal=True)
    reasons = metadata["errors"]["by_reason"]
    if reasons:
        bar("Dead letters by reason", list(reasons), list(reasons.values()), horizontal=True)
    return figures


def _example_html(tokenizer: Tokenizer, fmt, example: dict, number: int) -> str:
    text = lambda ids: html.escape(tokenizer.surface(ids).decode("utf-8", errors="replace"))  # noqa: E731
    ids, segments = example["input_ids"], example["segment_ids"]
    piece_names = {i: tokenizer.special_pieces[role] for role, i in tokenizer.special.as_dict().items()}
    rows = [f"<h3>Example {number}: {len(ids) - segments.count(0):,} tokens, {segments.count(0):,} padding</h3>"]
    for seg in sorted(set(segments) - {0}):
        part = segment_parts([t for t, s in zip(ids, segments) if s == seg], tokenizer.special, fmt)
        body = "".join(f'<span class="sentinel">{html.escape(piece_names[piece[0]])}</span>'
                       if kind == "separator" else f'<span class="{kind}" title="{kind}">{text(piece)}</span>'
                       for kind, piece in part.pieces)
        end = '<span class="sentinel">&lt;eot&gt;</span>' if part.eot else (
            '<span class="cut">[cut by the context end]</span>' if part.cut else "")
        rows.append(f'<div class="segment"><div class="label">segment {seg}: {part.label}</div>'
                    f'<pre>{body}{end}</pre></div>')
    return "\n".join(rows)


STYLE = """
body { font-family: sans-serif; margin: 2em; max-width: 70em; }
table { border-collapse: collapse; margin: 1em 0; } td, th { border: 1px solid #ccc; padding: 2px 8px; }
td.n { text-align: right; font-family: monospace; } img { display: block; margin: 1em 0; }
pre { white-space: pre-wrap; background: #f7f7f7; padding: 0.5em; }
.middle, .prefix\+middle { background: #ffe08a; } .suffix { background: #d7ecff; } .prefix { background: #e4f5dc; }
.sentinel { color: #a0208c; font-weight: bold; } .cut { color: #b00; font-weight: bold; }
.label { color: #2a6f97; font-weight: bold; }
"""


def report_html(output: str, metadata: dict, figures: list, examples_html: list) -> str:
    summary = "".join(f"<tr><th>{html.escape(label)}</th>{_cell(metadata, key)}</tr>" for label, key in SUMMARY)
    sources = []
    for kind, by in metadata.get("sources", {}).items():
        names = sorted({n for counts in by.values() for n in counts})
        head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
        rows = "".join(f"<tr><th>{html.escape(source)}</th>"
                       + "".join(_cell(metadata, ("sources", kind, source, n)) if n in counts else "<td></td>"
                                 for n in names) + "</tr>" for source, counts in by.items())
        sources.append(f"<h3>Per {kind}</h3><table><tr><th>{kind}</th>{head}</tr>{rows}</table>")
    reasons = "".join(f"<tr><th>{html.escape(r)}</th>{_cell(metadata, ('errors', 'by_reason', r))}</tr>"
                      for r in metadata["errors"]["by_reason"])
    histograms = []
    for title, path in HISTOGRAMS:
        bins = _bins(metadata, path)
        if not bins:
            continue
        histograms.append(f"<h3>{html.escape(title)}</h3><table><tr><th>at most</th>"
                          + "".join(f"<th>{html.escape(k[2:])}</th>" for k in bins) + "</tr><tr><th>count</th>"
                          + "".join(_cell(metadata, path + (k,)) for k in bins) + "</tr></table>")
    options = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(json.dumps(v))}</td></tr>"
                      for k, v in sorted(metadata.get("options", {}).items()))
    tokenizer = metadata["tokenizer"]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>fimflow report: {html.escape(output)}</title>
<style>{STYLE}</style></head><body>
<h1>fimflow dataset report</h1>
<p>{html.escape(output)}: {len(metadata['files'])} shard(s), format {html.escape(metadata['format'])},
fimflow {html.escape(metadata['fimflow_version'])}, seed {metadata['seed']}.</p>
<h2>Summary</h2><table>{summary}</table>
<h2>Plots</h2>{''.join(f'<h3>{html.escape(title)}</h3>{image}' for title, image in figures)}
<h2>Length distributions</h2>{''.join(histograms)}
<h2>Sources</h2>{''.join(sources) or '<p>none recorded</p>'}
<h2>Dead letters</h2><table>{reasons or '<tr><td>none</td></tr>'}</table>
<h2>Tokenizer and options</h2>
<p>{html.escape(tokenizer['path'])} (sha256 {html.escape(tokenizer['sha256'])}), vocabulary {metadata['vocab_size']:,}</p>
<table>{options}</table>
<h2>Examples</h2>
<p>Each segment in document order: <span class="prefix">prefix</span>, <span class="middle">middle</span>,
<span class="suffix">suffix</span>; the label gives the order the model sees (PSM or SPM).</p>
{''.join(examples_html)}
</body></html>
"""


def write_report(output: str, out: Optional[str], as_json: bool, examples: int, stream) -> int:
    metadata = load_metadata(output)
    if as_json:
        stream.write(json.dumps(numbers_as_json(metadata), indent=2, sort_keys=True) + "\n")
        return 0
    tokenizer = load_tokenizer(metadata["tokenizer"]["path"], special_token_names(metadata))
    fmt = dataset_format(metadata)
    shown = [_example_html(tokenizer, fmt, ex, i) for i, ex in enumerate(read_examples(output, examples))]
    page = report_html(output, metadata, _figures(metadata), shown)
    path = out or FileSystems.join(output, "report.html")
    with FileSystems.create(path, mime_type="text/html") as f:
        f.write(page.encode("utf-8"))
    stream.write(f"fimflow report: wrote {path}\n")
    return 0
