"""Each PTransform on a real runner (TestPipeline + assert_that)."""

from __future__ import annotations

import gzip
from collections import Counter
import json

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from tests.corpora import stdlib_sources
from transforms.core.hashing import content_hash, shard_key, shuffle_key
from transforms.core.packing import pack_bucket
from transforms.core.tokenizer import SpecialTokenNames, TokenizerHandle
from transforms.match import MatchInputs
from transforms.read import ReadDocuments
from transforms.schema import Document, FimConfig, InputSelection, TokenizedDocument, identified
from transforms.shards import ShardCopy, WriteShards
from transforms.shuffle import ShuffleDocuments
from transforms.stats import MergeStats
from transforms.tokenize import TokenizeDocuments


def test_read_documents_from_jsonl_gz_parquet_and_source_files(tmp_path):
    a_lines = ['{"content": "doc one", "id": 1}\n', "not json\n", '{"text": "wrong field"}\n',
               '{"content": 5}\n', '{"content": "   "}\n', "\ufeff" '{"content": "after bom"}\n']
    (tmp_path / "a.jsonl").write_text("".join(a_lines), encoding="utf-8")
    # A JSONL record's position is the byte offset of its line.
    at = [len("".join(a_lines[:i]).encode()) for i in range(len(a_lines))]
    with gzip.open(tmp_path / "b.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write(json.dumps({"content": "gzipped"}) + "\n")
    (tmp_path / "c.jsonl").write_bytes(b'{"content": "bad \xff utf8"}\n')
    pq.write_table(pa.table({"content": ["row zero", None, "row two"]}), tmp_path / "d.parquet")
    (tmp_path / "e.py").write_text("print('whole file')\n")
    (tmp_path / "f.bin").write_bytes(b"\x00\x01\x02binary")
    with TestPipeline() as p:
        out = (p | MatchInputs(InputSelection((str(tmp_path),))))["files"] | ReadDocuments("content", "id")
        docs = out["documents"] | "DocText" >> beam.Map(lambda d: (d.source.rsplit("/", 1)[1], d.position, d.text))
        reasons = out["rejected"] | "Reason" >> beam.Map(
            lambda r: (r.source.rsplit("/", 1)[1], r.position, r.reason))
        assert_that(docs, equal_to([
            ("a.jsonl", 0, "doc one"), ("a.jsonl", at[5], "after bom"), ("b.jsonl.gz", 0, "gzipped"),
            ("d.parquet", 0, "row zero"), ("d.parquet", 2, "row two"), ("e.py", 0, "print('whole file')\n"),
        ]), label="documents")
        assert_that(reasons, equal_to([
            ("a.jsonl", at[1], "invalid_json"), ("a.jsonl", at[2], "missing_text_field"),
            ("a.jsonl", at[3], "text_not_string"), ("a.jsonl", at[4], "empty_document"),
            ("c.jsonl", 0, "invalid_utf8"), ("d.parquet", 1, "text_not_string"),
            ("f.bin", 0, "binary_file"),
        ]), label="rejected")


@pytest.mark.parametrize("num_processes", [1, 3], ids=["one process", "two helpers"])
def test_tokenize_documents_matches_the_document_encoder(code_model_path, code_tokenizer, num_processes):
    texts = ["def f():\n    return 1\n", "日本語 <fim_middle>", "x"]
    expected = [(content_hash(t), tuple(code_tokenizer.encode_documents([t])[0])) for t in texts]
    with TestPipeline() as p:
        # Batches of one document, so with helpers some come back after their call, at the bundle's end.
        out = (p | beam.Create([identified(Document("s", i, t)) for i, t in enumerate(texts)])
               | TokenizeDocuments(TokenizerHandle(code_model_path, SpecialTokenNames()),
                                   num_processes=num_processes, batch_chars=1))
        ids = out["documents"] | beam.Map(lambda d: (d.content_hash, tuple(d.ids.tolist())))
        assert_that(ids, equal_to(expected), label="ids")
        tokens, chars = sum(len(e[1]) for e in expected), sum(map(len, texts))
        per_source = {f"source/{kind}/{name}": value for kind in ("pattern/", "language/unknown")
                      for name, value in (("documents", 3), ("tokens", tokens), ("text_chars", chars))}
        assert_that((out["stats"],) | MergeStats(), equal_to([{
            "documents": 3, "document_tokens": tokens, "text_chars_tokenized": chars,
            "special_token_text_in_documents": 1, **per_source,
            **Counter(f"document_tokens_le_{1 << max(len(e[1]) - 1, 0).bit_length()}" for e in expected)}]),
            label="stats")


def _tokenized(n: int) -> list[TokenizedDocument]:
    return [TokenizedDocument(content_hash(str(i)), np.arange(i % 7 + 1, dtype=np.int32) + 10)
            for i in range(n)]


def expected_buckets(docs, seed, num_buckets):
    keyed = sorted((shuffle_key(seed, d.content_hash), d.content_hash) for d in docs)
    return [(b, [h for k, h in keyed if k % num_buckets == b]) for b in range(num_buckets)]


@pytest.mark.parametrize("reverse", [False, True])
def test_shuffle_groups_documents_into_seeded_buckets_in_hash_order(reverse):
    docs = _tokenized(200)
    with TestPipeline() as p:
        out = (p | beam.Create(docs[::-1] if reverse else docs)
               | ShuffleDocuments(7, num_buckets=3))["buckets"] | (beam.Map(lambda kv: (kv[0], [d.content_hash for d in kv[1]])))
        assert_that(out, equal_to(expected_buckets(docs, 7, 3)))


@settings(max_examples=200, deadline=None)
@given(ids=st.lists(st.integers(0, 65535), max_size=3000), wide=st.booleans(), repo=st.none() | st.text(max_size=5))
def test_ids_cross_the_shuffle_compressed_and_come_back_exactly(ids, wide, repo):
    from transforms.core.compressed_ids import compressed, decompressed

    doc = TokenizedDocument(content_hash(str(ids)), np.array(ids, dtype=np.int32 if wide else np.uint16), repo,
                            "p.py", 7, "test")
    packed = compressed(doc)
    assert isinstance(packed.ids.data, bytes) and packed.ids.count == len(ids)
    back = decompressed(packed)
    assert back.ids.dtype == doc.ids.dtype and np.array_equal(back.ids, doc.ids)
    assert back._replace(ids=None) == doc._replace(ids=None)


def test_shuffle_order_is_a_permutation_that_depends_on_the_seed():
    docs = _tokenized(200)

    def order(seed, buckets):
        return seed, [d.content_hash for _, bucket in sorted(buckets, key=lambda kv: kv[0]) for d in bucket]

    def check(orders):
        orders = dict(orders)
        assert sorted(orders[7]) == sorted(d.content_hash for d in docs)
        assert orders[7] != orders[8] and sorted(orders[7]) == sorted(orders[8])
        assert orders[7] != [d.content_hash for d in docs]

    with TestPipeline() as p:
        created = p | beam.Create(docs)
        orders = [(created | f"Shuffle{seed}" >> ShuffleDocuments(seed, num_buckets=3))["buckets"]
                  | f"Buckets{seed}" >> beam.combiners.ToList() | f"Order{seed}" >> beam.Map(lambda b, s=seed: order(s, b))
                  for seed in (7, 8)]
        assert_that(orders | beam.Flatten(), check)


def test_pack_bucket_cuts_exact_lengths_and_keeps_the_partial_tail():
    docs = _tokenized(50)
    stream = np.concatenate([np.append(d.ids, 2) for d in docs])
    chunks = list(pack_bucket(4, docs, 16, eot=2))
    assert [len(c.ids) for c in chunks[:-1]] == [16] * (len(stream) // 16)
    assert np.array_equal(np.concatenate([c.ids for c in chunks]), stream)
    assert [c.index for c in chunks] == list(range(len(chunks))) and {c.bucket for c in chunks} == {4}


@pytest.mark.parametrize("num_processes", [1, 3], ids=["one process", "two helpers"])
def test_write_shards_writes_each_bucket_as_its_own_shard_of_every_copy(tmp_path, code_model_path,
                                                                       code_tokenizer, num_processes):
    import tensorflow as tf

    texts = stdlib_sources(60_000)
    eot = code_tokenizer.special.eot
    docs = [TokenizedDocument(content_hash(t), np.array(ids, dtype=np.uint16))
            for t, ids in zip(texts, code_tokenizer.encode_documents(texts))]
    buckets = [(0, docs[:len(docs) // 2]), (1, docs[len(docs) // 2:]), (2, [])]
    copies = (ShardCopy("train", FimConfig(64, rate=0.0)), ShardCopy("fim", FimConfig(64, rate=1.0), "fim/"))
    chunks = {b: list(pack_bucket(b, bucket_docs, 64, eot)) for b, bucket_docs in buckets}
    with TestPipeline() as p:
        out = (p | beam.Create(buckets)
               | WriteShards(str(tmp_path), 3, 5, copies, TokenizerHandle(code_model_path, SpecialTokenNames()),
                             eot, num_processes=num_processes))
        assert_that(out["shards"] | beam.Map(lambda s: (s.path.rsplit("/", 1)[1], s.records)), equal_to(
            [(f"{prefix}-{b:05d}-of-00003.tfrecord", len(chunks[b])) for prefix in ("train", "fim")
             for b in range(3)]), label="shards")
        # Each copy's FIM counts under its own prefix; the packing once.
        total = sum(map(len, chunks.values()))
        assert_that((out["stats"],) | MergeStats() | beam.Map(
            lambda s: (s["chunks"], s["examples"], s["fim/examples"], s.get("fim_fragments", 0),
                       s["fim/fim_fragments"] > 0)),
            equal_to([(total, total, total, 0, True)]), label="stats")

    def examples(path):
        features = {"input_ids": tf.io.VarLenFeature(tf.int64), "segment_ids": tf.io.VarLenFeature(tf.int64)}
        return [(tf.sparse.to_dense(e["input_ids"]).numpy(), tf.sparse.to_dense(e["segment_ids"]).numpy())
                for e in tf.data.TFRecordDataset(str(path)).map(lambda r: tf.io.parse_single_example(r, features))]

    for b in range(3):
        # Without FIM a record is its chunk, padded; the chunks come in the order of their keyed hash.
        order = sorted(range(len(chunks[b])), key=lambda i: shard_key(5, b, i))
        plain = examples(tmp_path / f"train-{b:05d}-of-00003.tfrecord")
        assert [ids[segments > 0].tolist() for ids, segments in plain] == [chunks[b][i].ids.tolist() for i in order]
        assert order != sorted(order) or len(order) < 2
        fim = examples(tmp_path / f"fim-{b:05d}-of-00003.tfrecord")
        assert len(fim) == len(plain) and all(len(ids) == 64 for ids, _ in fim)
        assert any(not np.array_equal(a[0], c[0]) for a, c in zip(fim, plain)) or not plain
    assert len(chunks[0]) > 4 and not chunks[2]


@pytest.mark.parametrize("formats", [("tfrecord", "array_record"), ("parquet", "megatron", "tfrecord")],
                         ids=["records made by helpers", "arrays made in place"])
def test_shards_made_by_helpers_are_the_bytes_and_counts_made_in_place(tmp_path, code_model_path, code_tokenizer,
                                                                       formats):
    """Two copies: with only formats of serialized examples, shards come from the helpers' records; with
    any format of arrays, they are made where they are written. Both must be what one process makes."""
    texts = stdlib_sources(80_000, seed=3)
    eot = code_tokenizer.special.eot
    docs = [TokenizedDocument(content_hash(t), np.array(ids, dtype=np.uint16))
            for t, ids in zip(texts, code_tokenizer.encode_documents(texts))]
    buckets = [(b, docs[b::4]) for b in range(4)]
    copies = (ShardCopy("train", FimConfig(64, rate=0.5)), ShardCopy("fim", FimConfig(64, rate=0.9), "fim/"))
    stats = {}
    for num_processes in (1, 3):
        out_dir = tmp_path / str(num_processes)
        out_dir.mkdir()
        with TestPipeline() as p:
            out = (p | beam.Create(buckets)
                   | WriteShards(str(out_dir), 4, 7, copies, TokenizerHandle(code_model_path, SpecialTokenNames()),
                                 eot, formats=formats, num_processes=num_processes))
            stats_path = str(tmp_path / f"stats-{num_processes}.json")
            _ = (out["stats"],) | MergeStats() | beam.Map(lambda s, path=stats_path: open(path, "w").write(json.dumps(s)))
        stats[num_processes] = json.loads((tmp_path / f"stats-{num_processes}.json").read_text())
    files = sorted(p.name for p in (tmp_path / "1").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "3").iterdir()) and len(files) >= 4 * 2 * len(formats)
    for name in files:
        assert (tmp_path / "1" / name).read_bytes() == (tmp_path / "3" / name).read_bytes(), name
    assert stats[1] == stats[3] and stats[1]["fim/fim_fragments"] > 0


def test_the_whole_pipeline_is_one_composite_and_its_counts_are_beam_counters(tmp_path, jsonl_corpus,
                                                                             code_model_path):
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipeline.build import FimflowPipeline
    from pipeline.plan import plan_run

    corpus, docs = jsonl_corpus
    (corpus.parent / "bad").mkdir(exist_ok=True)
    (corpus.parent / "bad" / "x.jsonl").write_text('{"content": 1}\n')
    out = tmp_path / "out"
    plan = plan_run(PipelineOptions(["--input", str(corpus / "*.jsonl"), "--input", str(corpus.parent / "bad"),
                                     "--output", str(out), "--tokenizer", code_model_path,
                                     "--context_length", "256", "--max_error_fraction", "0.5"]))
    p = TestPipeline()
    assert_that(p | FimflowPipeline(plan), equal_to([str(out / "metadata.json")]))
    result = p.run()
    result.wait_until_finish()
    metadata = json.loads((out / "metadata.json").read_text())
    counters: dict = {}
    for counter in result.metrics().query()["counters"]:
        counters[counter.key.metric.name] = counters.get(counter.key.metric.name, 0) + counter.committed
    # Each count is made once and published twice: in metadata.json and as a Beam counter.
    assert metadata["counts"]["documents"] == counters["documents"] == len(docs)
    for name in ("document_tokens", "chunks", "examples", "fim_fragments", "padding_tokens"):
        assert metadata["counts"][name] == counters[name] > 0, name
    assert metadata["errors"]["records_read"] == counters["records_read"] == len(docs) + 1
    assert metadata["errors"]["by_reason"] == {"text_not_string": 1} == {"text_not_string": counters["rejected/text_not_string"]}


def test_identical_documents_are_scattered_over_their_bucket_not_packed_together():
    dup = TokenizedDocument(content_hash("licence header"), np.arange(5, dtype=np.int32))
    docs = _tokenized(200) + [dup] * 40

    def scattered(orders):
        (order,) = orders
        adjacent = sum(a == b == dup.content_hash for a, b in zip(order, order[1:]))
        # 40 copies among 240 documents placed at random: about 6 neighbours; side by side, 39.
        assert order.count(dup.content_hash) == 40 and adjacent < 15, adjacent

    with TestPipeline() as p:
        out = ((p | beam.Create(docs) | ShuffleDocuments(7, num_buckets=1, dedup=False))["buckets"]
               | beam.Map(lambda kv: [d.content_hash for d in kv[1]]))
        assert_that(out, scattered)


def test_ids_travel_in_two_bytes_when_the_vocabulary_fits_and_packing_keeps_their_dtype():
    from transforms.core.packing import pack_bucket
    from transforms.schema import token_dtype

    assert token_dtype(65_536) == np.uint16 and token_dtype(65_537) == np.int32
    for dtype, top in ((np.uint16, 65_535), (np.int32, 250_000)):
        docs = [TokenizedDocument(bytes([i]), np.array([top, 1, 2], dtype=dtype)) for i in range(3)]
        chunks = list(pack_bucket(0, docs, 5, eot=top - 1))
        assert all(c.ids.dtype == dtype for c in chunks)
        assert np.concatenate([c.ids for c in chunks]).tolist() == [top, 1, 2, top - 1] * 3
