"""Near-duplicate removal (``--dedup near``): MinHash + LSH over documents, before splits are assigned.

In: ``Document``. Out: ``{'documents': the documents that survive, 'removed': (Document, survivor's
identity) for each one removed, 'stats': counts}``.

1. Each document's MinHash signature (``transforms.core.minhash``), keyed by its identity.
2. LSH: one key per band; documents sharing a band key are candidates, joined as a star to the
   least identity of the bucket (linear in the bucket, however many copies a file has).
3. Each candidate pair is verified by its estimated Jaccard (signatures joined at both ends).
4. Connected components of the verified pairs by label propagation over PCollections: each
   round, every node takes the least label among itself and its neighbours. The pipeline is a
   fixed graph, so the rounds are unrolled, ``MAX_ROUNDS`` of them; nodes whose label still
   changed in the last round are counted (``near_duplicate_nodes_unconverged``): such a
   component keeps more than one survivor, and nothing is lost. Only documents in some verified
   pair enter this graph, so it is small next to the corpus.
5. Each component's survivor is its least identity, so it is the same on every runner and for
   every ``--seed``; every other member is removed. Identical documents are one node (one
   identity); the shuffle's exact dedup keeps one of them.

No member of a cluster but its survivor reaches any split, so no near-copy crosses train,
validation and test; the survivor's split is that of its own identity, as for any document.
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable

import apache_beam as beam

from transforms.core import minhash
from transforms.schema import CLUSTER_HISTOGRAM_PREFIX, Document, Stats

MAX_ROUNDS = 8


def node_id(doc: Document) -> bytes:
    return doc.content_hash


def _signature(keyed, params: minhash.LshParams, ngram: int):
    identity, doc = keyed
    return identity, minhash.signature(doc.text, ngram, params.num_perm)


def _star(bucket) -> Iterable[tuple[bytes, bytes]]:
    _, ids = bucket
    ids = sorted(set(ids))
    for other in ids[1:]:
        yield ids[0], other


def _first(values):
    for value in values:
        return value
    return None


def _verified(joined, threshold: float) -> Iterable[tuple[bytes, bytes]]:
    """(b, ({'a': [(a, sig_a)], 'sig': [sig_b]})) -> the pair when its estimated Jaccard reaches ``threshold``."""
    b, groups = joined
    sig_b = _first(groups["sig"])
    for a, sig_a in groups["edge"]:
        if minhash.estimated_jaccard(sig_a, sig_b) >= threshold:
            yield a, b


def _with_signature(joined) -> Iterable[tuple[bytes, tuple[bytes, object]]]:
    a, groups = joined
    sig_a = _first(groups["sig"])
    for b in groups["edge"]:
        yield b, (a, sig_a)


def _proposals(joined) -> Iterable[tuple[bytes, bytes]]:
    """(node, {'label': [label], 'neighbour': [...]}) -> the node's label offered to itself and its neighbours."""
    node, groups = joined
    label = _first(groups["label"])
    yield node, label
    for neighbour in groups["neighbour"]:
        yield neighbour, label


def shuffled_bytes(doc: Document, params: minhash.LshParams) -> int:
    """The payload this stage moves through shuffles for one document, beyond what ``--dedup exact`` moves:
    its text once (joined with the removals), its signature into both verification joins, one key and
    identity per band. Pickling overhead and the (few) candidate pairs are left out."""
    identity, signature = 16, 4 * params.num_perm
    return (len(doc.text.encode("utf-8", "surrogatepass")) + identity + 2 * (identity + signature)
            + params.bands * (10 + identity))


def _size_bucket(size: int) -> str:
    return f"{CLUSTER_HISTOGRAM_PREFIX}{1 << (size - 1).bit_length()}"


def _kept_or_removed(joined):
    _, groups = joined
    survivor = _first(groups["survivor"])
    for doc in groups["doc"]:
        if survivor is None:
            yield doc
        else:
            yield beam.pvalue.TaggedOutput("removed", (doc, survivor))


def _removal_stats(removed) -> Stats:
    doc, _ = removed
    return Counter({"near_duplicates_removed": 1,
                    "near_duplicate_text_bytes_removed": len(doc.text.encode("utf-8", "surrogatepass"))})


class RemoveNearDuplicates(beam.PTransform):
    """``PCollection[Document]`` -> ``{'documents', 'removed', 'stats'}`` (see the module docstring)."""

    def __init__(self, threshold: float = minhash.DEFAULT_THRESHOLD, ngram: int = minhash.DEFAULT_NGRAM,
                 num_perm: int = minhash.DEFAULT_NUM_PERM):
        super().__init__()
        self._params = minhash.lsh_params(threshold, num_perm)
        self._ngram = ngram

    def expand(self, documents):
        params, ngram = self._params, self._ngram
        keyed = documents | "Key" >> beam.Map(lambda d: (node_id(d), d))
        signatures = keyed | "Signature" >> beam.Map(_signature, params, ngram)
        candidates = (signatures
                      | "Bands" >> beam.FlatMap(lambda s: ((key, s[0]) for key in minhash.band_keys(s[1], params)))
                      | "GroupBands" >> beam.GroupByKey()
                      | "Star" >> beam.FlatMap(_star)
                      | "DistinctCandidates" >> beam.Distinct())
        halfway = ({"sig": signatures, "edge": candidates} | "JoinFirst" >> beam.CoGroupByKey()
                   | "SignatureOfFirst" >> beam.FlatMap(_with_signature))
        pairs = ({"sig": signatures, "edge": halfway} | "JoinSecond" >> beam.CoGroupByKey()
                 | "Verify" >> beam.FlatMap(_verified, params.threshold))
        neighbours = pairs | "BothWays" >> beam.FlatMap(lambda p: (p, (p[1], p[0])))
        labels = (neighbours | "Nodes" >> beam.Map(lambda p: (p[0], p[0])) | "DistinctNodes" >> beam.Distinct())
        previous = labels
        for round_index in range(MAX_ROUNDS):
            previous, labels = labels, (
                {"label": labels, "neighbour": neighbours} | f"Round{round_index}/Join" >> beam.CoGroupByKey()
                | f"Round{round_index}/Offer" >> beam.FlatMap(_proposals)
                | f"Round{round_index}/Least" >> beam.CombinePerKey(min))
        unconverged = ({"before": previous, "after": labels} | "Compare" >> beam.CoGroupByKey()
                       | "Changed" >> beam.Filter(lambda j: _first(j[1]["before"]) != _first(j[1]["after"]))
                       | "CountChanged" >> beam.combiners.Count.Globally())
        survivors = labels | "NonSurvivors" >> beam.Filter(lambda kv: kv[0] != kv[1])
        split = ({"doc": keyed, "survivor": survivors} | "JoinDocuments" >> beam.CoGroupByKey()
                 | "Split" >> beam.FlatMap(_kept_or_removed).with_outputs("removed", main="documents"))
        sizes = (labels | "ByCluster" >> beam.Map(lambda kv: (kv[1], 1)) | "ClusterSize" >> beam.CombinePerKey(sum)
                 | "SizeStats" >> beam.Map(lambda kv: Counter({"near_duplicate_clusters": 1, _size_bucket(kv[1]): 1})))
        moved = (documents | "ShuffledBytes" >> beam.Map(shuffled_bytes, params)
                 | "SumShuffledBytes" >> beam.CombineGlobally(sum)
                 | "ShuffledStats" >> beam.Map(lambda n: Counter({"near_dedup_shuffled_bytes": n})))
        stats = (split.removed | "RemovalStats" >> beam.Map(_removal_stats), moved,
                 sizes,
                 unconverged | "UnconvergedStats" >> beam.Map(
                     lambda n: Counter({"near_duplicate_nodes_unconverged": n})))
        return {"documents": split.documents, "removed": split.removed,
                "stats": stats | "FlattenStats" >> beam.Flatten()}


def _log_lines(joined) -> Iterable[tuple[tuple, str]]:
    """(survivor id, {'removed': [Document], 'survivor': [Document]}) -> (sort key, JSON line) per removed one."""
    import json

    survivor_id, groups = joined
    survivor = _first(groups["survivor"])
    for doc in groups["removed"]:
        line = json.dumps({"source": doc.source, "position": doc.position, "id": doc.id,
                           "content_hash": doc.content_hash.hex(),
                           "survivor": {"source": survivor.source, "position": survivor.position, "id": survivor.id,
                                        "content_hash": survivor_id.hex()}}, ensure_ascii=False)
        yield (doc.source, doc.position, doc.content_hash), line


class _WriteLogFn(beam.DoFn):
    def __init__(self, path: str):
        self._path = path

    def process(self, lines):
        from transforms.files import write_atomically

        ordered = [line for _, line in sorted(lines)]
        write_atomically(self._path, lambda f: f.write("".join(line + "\n" for line in ordered).encode("utf-8")),
                         "application/x-ndjson")
        yield Counter({"near_dedup_log_lines": len(ordered)})


class WriteDedupLog(beam.PTransform):
    """``(documents, removed)`` of ``RemoveNearDuplicates`` -> ``PCollection[Stats]`` once the log is written: one
    JSON line per removed document naming its survivor, sorted by source and position, written whole by one
    worker (a line is about 300 bytes: a million removals hold 300 MB there)."""

    def __init__(self, path: str):
        super().__init__()
        self._fn = _WriteLogFn(path)

    def expand(self, inputs):
        documents, removed = inputs
        return ({"removed": removed | "BySurvivor" >> beam.Map(lambda r: (r[1], r[0])),
                 "survivor": documents | "ById" >> beam.Map(lambda d: (node_id(d), d))}
                | "JoinSurvivors" >> beam.CoGroupByKey()
                | "Lines" >> beam.FlatMap(_log_lines)
                | "All" >> beam.combiners.ToList()
                | "Write" >> beam.ParDo(self._fn))
