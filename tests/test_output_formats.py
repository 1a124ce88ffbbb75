"""Every output format, written by a real run and read back by its own ecosystem's reader: ArrayRecord by
``array_record`` and Grain, Megatron indexed datasets by megatron-core, Parquet by Hugging Face
``datasets``, and any of them through the PyTorch ``IterableDataset`` of docs/trainers.md. Each is
compared, record for record, with the TFRecords of the same run read by ``tf.data``.
"""

from __future__ import annotations

import json
import re
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, strategies as st

from pipeline.cli import main
from pipeline.inspect_dataset import read_examples
from tests.checkout import ROOT, run_cli_without
from tests.corpora import multilingual_documents, stdlib_sources, write_jsonl
from transforms.files import TEMPORARY_PREFIX, AtomicFiles, ShardName
from transforms.schema import Example
from transforms.sinks import OUTPUT_FORMATS, SinkLayout, output_sink

SPLITS = ("train", "validation", "validation_ar")
CONTEXT = 256


def run(corpus: Path, out: Path, model: str, *formats: str, extra: tuple = ()) -> dict:
    flags = [flag for name in formats for flag in ("--output_format", name)]
    assert main(["run", "--input", str(corpus), "--output", str(out), "--tokenizer", model, "--context_length",
                 str(CONTEXT), "--num_shards", "3", "--validation_fraction", "0.2", "--seed", "3", "--quiet",
                 *flags, *extra]) == 0
    return json.loads((out / "metadata.json").read_text())


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("corpus") / "code.jsonl",
                       stdlib_sources(250_000, seed=4) + multilingual_documents(30))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, corpus, code_model_path):
    """One run writing every format; the TFRecord output is the reference."""
    out = tmp_path_factory.mktemp("formats") / "out"
    return out, run(corpus, out, code_model_path, *OUTPUT_FORMATS)


def shard_files(metadata: dict, out: Path, output_format: str, split: str = "train") -> list[Path]:
    return [out / entry["path"] for entry in metadata["files"]
            if entry["format"] == output_format and ShardName.parse(entry["path"]).prefix == split]


def tf_records(path: Path) -> list[bytes]:
    import tensorflow as tf

    return list(tf.data.TFRecordDataset([str(path)]).as_numpy_iterator())


def test_every_format_is_listed_with_every_shard_in_metadata(dataset):
    out, metadata = dataset
    assert [entry["name"] for entry in metadata["output_formats"]] == list(OUTPUT_FORMATS)
    for name in OUTPUT_FORMATS:
        for split in SPLITS:
            files = shard_files(metadata, out, name, split)
            assert len(files) == metadata["shards"][split] and all(f.exists() for f in files)
            for suffix in output_sink(name).suffixes:
                assert all(Path(str(ShardName.parse(str(f)).with_suffix(suffix))).exists() for f in files)
    assert not list(out.glob(f"{TEMPORARY_PREFIX}*"))
    # Counted once, not once per format.
    assert metadata["splits"]["train"]["examples"] == metadata["counts"]["examples"]


@pytest.mark.parametrize("output_format", [name for name in OUTPUT_FORMATS if name != "tfrecord"])
def test_each_format_holds_the_tfrecords_examples_in_their_order(dataset, output_format):
    out, metadata = dataset
    for split in SPLITS:
        reference = read_examples(str(out), split=split, output_format="tfrecord")
        assert reference and read_examples(str(out), split=split, output_format=output_format) == reference


def test_array_record_holds_the_tfrecord_bytes_for_array_record_and_grain(dataset):
    from array_record.python.array_record_module import ArrayRecordReader
    import grain.python as grain

    out, metadata = dataset
    everything = []
    for path in shard_files(metadata, out, "array_record"):
        reader = ArrayRecordReader(str(path))
        records = reader.read_all()
        reader.close()
        assert records == tf_records(path.with_suffix(".tfrecord"))
        everything += records
    source = grain.ArrayRecordDataSource([str(p) for p in shard_files(metadata, out, "array_record")])
    assert len(source) == len(everything) == metadata["counts"]["examples"]
    assert [source[i] for i in range(len(source))] == everything


def expected_index(sequences: int, length: int, dtype_code: int, itemsize: int) -> bytes:
    """The .idx Megatron-LM's ``_IndexWriter`` writes for ``sequences`` one-sequence documents, written
    here from its published layout, not from fimflow's writer."""
    return (b"MMIDIDX\x00\x00" + struct.pack("<QB", 1, dtype_code) + struct.pack("<QQ", sequences, sequences + 1)
            + b"".join(struct.pack("<i", length) for _ in range(sequences))
            + b"".join(struct.pack("<q", i * length * itemsize) for i in range(sequences))
            + b"".join(struct.pack("<q", i) for i in range(sequences + 1)))


def megatron():
    warnings.filterwarnings("ignore", message=".*Transformer Engine.*")
    from megatron.core.datasets import indexed_dataset

    return indexed_dataset


def test_megatron_datasets_are_read_by_megatron_core_as_the_examples(dataset):
    IndexedDataset = megatron().IndexedDataset
    out, metadata = dataset
    for split in SPLITS:
        reference = read_examples(str(out), split=split, output_format="tfrecord")
        tokens, segments = [], []
        for path in shard_files(metadata, out, "megatron", split):
            prefix = str(path)[:-len(".bin")]
            ids = IndexedDataset(prefix)
            segment_ids = IndexedDataset(prefix + ".segment_ids")
            n = len(ids)
            assert ids.index.dtype == np.uint16 and len(segment_ids) == n  # a 2,000-piece vocabulary
            assert list(ids.document_indices) == list(range(n + 1))
            assert list(ids.index.sequence_lengths) == [CONTEXT] * n
            assert Path(prefix + ".idx").read_bytes() == expected_index(n, CONTEXT, 8, 2)
            assert Path(prefix + ".segment_ids.idx").read_bytes() == expected_index(n, CONTEXT, 8, 2)
            tokens += [ids[i].tolist() for i in range(n)]
            segments += [segment_ids[i].tolist() for i in range(n)]
        assert tokens == [e["input_ids"] for e in reference]
        assert segments == [e["segment_ids"] for e in reference]


class MegatronTokenizer:
    """What GPTDataset asks of a tokenizer: its eod and pad ids, and an identity for its cache."""

    def __init__(self, metadata: dict):
        self.eod = metadata["special_tokens"]["eot"]
        self.pad = metadata["special_tokens"]["pad"]
        self.vocab_size = metadata["vocab_size"]
        self.unique_identifiers = {"class": "fimflow-test", "eod": self.eod, "pad": self.pad}


def gpt_dataset(prefix: str, metadata: dict, cache: Path, add_extra_token: bool):
    megatron()
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig
    from megatron.core.datasets.indexed_dataset import IndexedDataset
    from megatron.core.datasets.utils import Split

    ids = IndexedDataset(prefix)
    config = GPTDatasetConfig(random_seed=1, sequence_length=CONTEXT, tokenizer=MegatronTokenizer(metadata),
                              reset_position_ids=True, reset_attention_mask=True, eod_mask_loss=False,
                              add_extra_token_to_sequence=add_extra_token, split="100,0,0",
                              path_to_cache=str(cache))
    return GPTDataset(ids, prefix, np.arange(len(ids), dtype=np.int32), None, Split.train, config)


def test_megatron_gpt_dataset_samples_are_exactly_the_examples_as_the_docs_configure_it(dataset, tmp_path):
    """docs/trainers.md: sequence_length = context, no extra token, attention and positions reset at
    <eot>: each sample is one example, its positions fimflow's and its loss masked on padding only."""
    out, metadata = dataset
    pad = metadata["special_tokens"]["pad"]
    path = shard_files(metadata, out, "megatron")[0]
    examples = {tuple(e["input_ids"]): e for e in read_examples(str(out), output_format="tfrecord")}
    samples = gpt_dataset(str(path)[:-len(".bin")], metadata, tmp_path / "cache", add_extra_token=False)
    n = len(megatron().IndexedDataset(str(path)[:-len(".bin")]))
    assert len(samples) == n
    seen = set()
    for i in range(len(samples)):
        sample = samples[i]
        tokens = sample["tokens"].tolist()
        # GPTDataset maps the pad id to 0 in tokens; the example is the one with these ids elsewhere.
        matches = [e for ids, e in examples.items()
                   if [t if s else 0 for t, s in zip(ids, e["segment_ids"])] == tokens
                   or list(ids) == tokens]
        assert matches, f"sample {i} is no example"
        example = matches[0]
        seen.add(tuple(example["input_ids"]))
        real = np.array(example["segment_ids"]) != 0
        assert sample["position_ids"].numpy()[real].tolist() == np.array(example["positions"])[real].tolist()
        labels = np.append(np.array(example["input_ids"])[1:], pad)
        assert sample["loss_mask"].numpy().tolist() == (labels != pad).astype(float).tolist()
    assert len(seen) == n
    # Megatron's default draws one token more per sample: samples then straddle examples.
    straddling = gpt_dataset(str(path)[:-len(".bin")], metadata, tmp_path / "cache2", add_extra_token=True)
    assert len(straddling) < n or any(straddling[i]["tokens"].tolist() not in [list(k) for k in examples]
                                      for i in range(len(straddling)))


def test_megatron_ids_of_a_large_vocabulary_are_int32(tmp_path):
    IndexedDataset = megatron().IndexedDataset
    rng = np.random.default_rng(0)
    examples = [Example(0, i, rng.integers(0, 70_000, 8), np.repeat([1, 2, 0], [3, 4, 1]),
                        np.array([0, 1, 2, 0, 1, 2, 3, 0])) for i in range(5)]
    name = ShardName(str(tmp_path / "train"), 0, 1, "")
    with AtomicFiles() as files:
        sink = output_sink("megatron")(files, name, SinkLayout(8, 70_000))
        for example in examples:
            sink.write(example, None)
        sink.close()
        files.commit()
    ids = IndexedDataset(str(name))
    assert ids.index.dtype == np.int32
    assert [ids[i].tolist() for i in range(5)] == [e.input_ids.tolist() for e in examples]
    assert (tmp_path / "train-00000-of-00001.idx").read_bytes() == expected_index(5, 8, 4, 4)


def test_parquet_loads_with_hugging_face_datasets(dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import datasets

    out, metadata = dataset
    for split in SPLITS:
        loaded = datasets.load_dataset("parquet", data_files=[str(p) for p in shard_files(metadata, out, "parquet", split)],
                                       split="train", cache_dir=str(tmp_path / "cache"))
        assert {name: str(feature) for name, feature in loaded.features.items()} == {
            name: "List(Value('int32'))" for name in ("input_ids", "segment_ids", "positions")}
        reference = read_examples(str(out), split=split, output_format="tfrecord")
        assert [dict(row) for row in loaded] == reference


def pytorch_dataset_class():
    """The ``FimflowDataset`` of docs/trainers.md, run as the page shows it."""
    page = (ROOT / "docs" / "trainers.md").read_text()
    (code,) = [block for block in re.findall(r"^```python\n(.*?)^```", page, re.M | re.S)
               if "class FimflowDataset" in block]
    namespace: dict = {}
    exec(compile(code, "docs/trainers.md", "exec"), namespace)
    return namespace["FimflowDataset"]


@pytest.mark.parametrize("output_format", list(OUTPUT_FORMATS))
def test_the_pytorch_dataset_of_the_docs_reads_every_format(dataset, output_format):
    import torch

    out, metadata = dataset
    FimflowDataset = pytorch_dataset_class()
    reference = read_examples(str(out), split="validation", output_format="tfrecord")
    batches = list(torch.utils.data.DataLoader(FimflowDataset(str(out), "validation", output_format), batch_size=None))
    assert len(batches) == len(reference)
    for batch, example in zip(batches, reference):
        assert batch["input_ids"].tolist() == example["input_ids"][:-1]
        assert batch["labels"].tolist() == example["input_ids"][1:]
        assert batch["loss_mask"].tolist() == [s != 0 for s in example["segment_ids"][1:]]


def test_the_pytorch_dataset_splits_examples_over_loader_workers(dataset):
    import torch

    out, metadata = dataset
    FimflowDataset = pytorch_dataset_class()
    loader = torch.utils.data.DataLoader(FimflowDataset(str(out), "train", "parquet"), batch_size=None, num_workers=2)
    seen = sorted(batch["labels"].tolist() for batch in loader)
    assert seen == sorted(e["input_ids"][1:] for e in read_examples(str(out), output_format="parquet"))


def test_tfrecords_are_the_same_bytes_with_or_without_other_formats(dataset, corpus, code_model_path, tmp_path):
    out, metadata = dataset
    alone = run(corpus, tmp_path / "alone", code_model_path)
    assert [e["name"] for e in alone["output_formats"]] == ["tfrecord"]
    for entry in alone["files"]:
        assert (tmp_path / "alone" / entry["path"]).read_bytes() == (out / entry["path"]).read_bytes()
    assert alone["counts"] == metadata["counts"]


def test_a_run_in_another_format_removes_the_earlier_formats_files(corpus, code_model_path, tmp_path):
    out = tmp_path / "out"
    run(corpus, out, code_model_path, "megatron", "parquet")
    run(corpus, out, code_model_path, "array_record", extra=("--overwrite",))
    assert sorted({p.suffix for p in out.glob("*-of-*")}) == [".array_record"]


@pytest.mark.parametrize("sink_name", list(OUTPUT_FORMATS))
def test_every_format_writes_into_a_folder_that_does_not_exist_yet(tmp_path, sink_name):
    name = ShardName(str(tmp_path / "new" / "train"), 0, 1, "")
    with AtomicFiles() as files:
        sink = output_sink(sink_name)(files, name, SinkLayout(8, 100))
        sink.write(Example(0, 0, np.arange(8), np.ones(8, dtype=np.int64), np.arange(8)), b"x")
        sink.close()
        files.commit()
    assert (tmp_path / "new" / f"train-00000-of-00001{output_sink(sink_name).suffixes[0]}").stat().st_size > 0


def test_a_failed_shard_leaves_none_of_its_files(tmp_path):
    """A sink that fails after writing part of its files (here: before its index) leaves no file under a
    final name and no temporary one."""
    name = ShardName(str(tmp_path / "train"), 0, 1, "")
    example = Example(0, 0, np.arange(8), np.ones(8, dtype=np.int64), np.arange(8))
    with pytest.raises(OSError, match="disk full"):
        with AtomicFiles() as files:
            for sink_name in OUTPUT_FORMATS:
                sink = output_sink(sink_name)(files, name, SinkLayout(8, 100))
                sink.write(example, b"x")
            raise OSError("disk full")
    assert list(tmp_path.iterdir()) == []


@given(st.text(st.characters(categories=("L", "N"), include_characters="-_/."), min_size=1, max_size=30)
       .filter(lambda prefix: not prefix.endswith("/")),
       st.integers(0, 99_999), st.integers(1, 99_999), st.sampled_from([s for sink in OUTPUT_FORMATS.values()
                                                                      for s in sink.suffixes] + [".jsonl"]))
def test_a_shard_name_parses_back_to_its_parts(prefix, shard, num_shards, suffix):
    name = ShardName(prefix, shard, num_shards, suffix)
    assert ShardName.parse(str(name)) == name


def test_a_name_fimflow_does_not_write_is_not_a_shard():
    for path in ("train.tfrecord", "train-1-of-2.tfrecord", "train-00001-of-00002", "metadata.json"):
        with pytest.raises(ValueError, match="not a shard file name"):
            ShardName.parse(path)


def test_array_record_without_its_extra_says_in_one_line_which_to_install(tmp_path, code_model_path):
    corpus = tmp_path / "a.jsonl"
    corpus.write_text('{"content": "def f(x):\\n    return x\\n"}\n')
    result = run_cli_without(("array_record",), ["run", "--input", str(corpus), "--output", str(tmp_path / "out"),
                                                 "--tokenizer", code_model_path, "--output_format", "array_record"])
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.count("\n") == 1 and 'pip install -e ".[array_record]"' in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()
