"""Real corpora are never clean: every record is accounted for, bad ones explained."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

from pipeline.cli import main
from tests.corpora import stdlib_sources
from transforms.core.sentencepiece_tokenizer import SentencePieceTokenizer

EXPECTED_REASONS = {"invalid_json": 1, "not_an_object": 1, "missing_text_field": 1, "text_not_string": 2,
                    "empty_document": 4, "invalid_utf8": 2, "binary_file": 1, "file_too_large": 1,
                    "lone_surrogate": 1}
GOOD = [d[:3000] for d in stdlib_sources(1_000_000, seed=4)[:33]]


def defect_corpus(root):
    """Each defect in each format, beside good records; returns (records, good documents)."""
    root.mkdir()
    lines = [json.dumps({"content": d, "id": f"g{i}"}) for i, d in enumerate(GOOD[:10])]
    lines += ['{"content": "unterminated', '[1, 2]', '{"id": "no-text"}', '{"content": 7, "id": "num"}',
              '{"content": "   \\n  "}', '{"content": "lone \\ud800 surrogate"}']
    data = ("\n".join(lines) + "\n").encode() + b'{"content": "bad \xff\xfe utf8"}\n'
    (root / "a.jsonl").write_bytes(b"\xef\xbb\xbf" + data)
    (root / "b.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(
        "".join(json.dumps({"content": d}) + "\n" for d in GOOD[10:15]).encode()))
    pq.write_table(pa.table({"content": GOOD[15:20] + [None, "", 5 * "\t"]}), root / "c.parquet",
                   row_group_size=2)
    src = root / "src"
    src.mkdir()
    for i, d in enumerate(GOOD[20:]):
        (src / f"m{i}.py").write_text(d)
    (src / "empty.py").write_text("")
    (src / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR")
    (src / "latin1.py").write_bytes("caf\xe9 = 1\n".encode("latin-1"))
    (src / "huge.py").write_bytes(b"x = 1\n" * 400_000)
    records = 17 + 5 + 8 + len(GOOD[20:]) + 4
    return records, len(GOOD)


def test_every_record_is_a_document_or_a_dead_letter_with_its_reason(tmp_path, code_model_path):
    records, good = defect_corpus(tmp_path / "in")
    out = tmp_path / "out"
    assert main(["run", "--input", str(tmp_path / "in"), "--output", str(out), "--tokenizer", code_model_path,
                 "--context_length", "128", "--max_file_bytes", "1000000", "--max_error_fraction", "0.5",
                 "--id_field", "id"]) == 0
    metadata = json.loads((out / "metadata.json").read_text())
    errors = metadata["errors"]
    assert metadata["counts"]["documents"] == good
    assert errors["records_read"] == records == good + errors["records_rejected"]
    assert errors["by_reason"] == EXPECTED_REASONS
    rejected = [json.loads(line) for line in (out / "errors" / "rejected-00000-of-00001.jsonl").open()]
    assert len(rejected) == errors["records_rejected"]
    assert all(r["source"] and r["reason"] and r["detail"] is not None for r in rejected)
    by_id = {r["id"]: r for r in rejected if r["id"]}
    # Its position: the byte offset of its line, after the BOM and 13 lines.
    a_jsonl = (tmp_path / "in" / "a.jsonl").read_bytes()
    num_at = a_jsonl.index(b'{"content": 7, "id": "num"}')
    assert a_jsonl[num_at - 1:num_at] == b"\n" and num_at == 3 + len(b"\n".join(a_jsonl[3:].split(b"\n")[:13])) + 1
    assert by_id["num"]["reason"] == "text_not_string" and by_id["num"]["position"] == num_at
    assert by_id["no-text"]["raw_start"].startswith('{"id": "no-text"}')


def test_too_many_errors_fail_the_run_without_metadata(tmp_path, code_model_path, capsys):
    defect_corpus(tmp_path / "in")
    out = tmp_path / "out"
    assert main(["run", "--input", str(tmp_path / "in"), "--output", str(out), "--tokenizer", code_model_path,
                 "--context_length", "128", "--max_file_bytes", "1000000"]) == 1
    err = capsys.readouterr().err
    # The binary file is skipped by content type: a dead letter, not an error.
    assert "9 of 47 records in error" in err and "above --max_error_fraction=0.01" in err
    assert "top reasons: invalid_utf8: 2, text_not_string: 2, file_too_large: 1" in err
    assert "--include/--exclude" in err
    assert not (out / "metadata.json").exists()
    assert (out / "errors" / "rejected-00000-of-00001.jsonl").exists()


def test_include_and_exclude_select_files_under_a_directory(tmp_path, code_model_path, capsys):
    defect_corpus(tmp_path / "in")
    out = tmp_path / "out"
    assert main(["run", "--input", str(tmp_path / "in"), "--include", "*.py", "--exclude", "*/huge.py",
                 "--exclude", "*/latin1.py", "--output", str(out), "--tokenizer", code_model_path,
                 "--context_length", "128"]) == 0
    metadata = json.loads((out / "metadata.json").read_text())
    assert metadata["errors"]["by_reason"] == {"empty_document": 1}
    assert metadata["counts"]["documents"] == len(GOOD[20:])
    assert main(["run", "--input", str(tmp_path / "in"), "--include", "*.rs", "--output", str(tmp_path / "o2"),
                 "--tokenizer", code_model_path]) == 2
    assert "no file matched (after --include/--exclude)" in capsys.readouterr().err


def test_long_documents_are_encoded_in_bounded_pieces_without_losing_bytes(code_tokenizer, llama_tokenizer,
                                                                          code_model_bytes):
    text = "".join(f"line {i}: 日本語 🎉 value = {i * 7}\n" for i in range(3000))
    for tokenizer in (code_tokenizer, llama_tokenizer):
        # Pieces end at word cuts: exactly SentencePiece's ids for the whole text.
        assert tokenizer.encode_long_document(text, 4096).tolist() == tokenizer.encode_documents([text])[0]
    # Without the word cache pieces end after newlines, or anywhere: the bytes stay.
    reference = SentencePieceTokenizer(code_model_bytes, reference=True)
    whole = reference.encode_documents([text])[0]
    assert reference.surface(reference.encode_long_document(text, 4096)) == reference.surface(whole)
    no_cut = "x" * 10_000 + "é" * 5000
    for tokenizer in (code_tokenizer, reference):
        assert tokenizer.surface(tokenizer.encode_long_document(no_cut, 999)) == no_cut.encode()



def test_the_defect_corpus_in_cloud_storage_is_accounted_for_the_same_way(gcs, tmp_path, code_model_path):
    from apache_beam.io.filesystems import FileSystems

    from tests.gcs_emulator import upload

    records, good = defect_corpus(tmp_path / "in")
    for path in sorted(p for p in (tmp_path / "in").rglob("*") if p.is_file()):
        upload(path.read_bytes(), gcs.url(f"defects/{path.relative_to(tmp_path / 'in')}"))
    local = tmp_path / "local.jsonl"
    local.write_text('{"content": "local = True\\n"}\n{"content": ""}\n')
    out = gcs.url("defects_out")
    # gs:// and local inputs mixed in one run.
    assert main(["run", "--input", gcs.url("defects/**"), "--input", str(local), "--output", out, "--tokenizer", code_model_path,
                 "--context_length", "128", "--max_file_bytes", "1000000", "--max_error_fraction", "0.5",
                 "--id_field", "id"]) == 0
    with FileSystems.open(out + "/metadata.json") as f:
        metadata = json.load(f)
    assert metadata["counts"]["documents"] == good + 1
    assert metadata["errors"]["records_read"] == records + 2
    assert metadata["errors"]["by_reason"] == {**EXPECTED_REASONS, "empty_document": 5}


def test_a_huge_jsonl_document_is_read_without_extra_copies(tmp_path):
    import tracemalloc

    from transforms.read import RecordReader
    from transforms.core.hashing import content_hash

    size = 40_000_000
    path = tmp_path / "huge.jsonl"
    path.write_text('{"content": "' + "def f(): pass\\n" * (size // 15) + '"}\n')
    tracemalloc.start()
    try:
        (doc,) = RecordReader().read(str(path))
        content_hash(doc.text)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(doc.text) > size * 0.9
    # The line's bytes and the document's text are alive together at most:
    # no decoded copy of the line, no strip() copy, no whole-text encode for hashing.
    assert peak < 2.3 * size, peak


def test_truncated_and_corrupt_files_end_in_a_dead_letter_not_a_crash(tmp_path):
    import bz2
    import gzip

    from transforms.read import RecordReader
    from transforms.schema import Document

    good = "".join(json.dumps({"content": f"x = {i}"}) + "\n" for i in range(2000)).encode()
    (tmp_path / "cut.jsonl.gz").write_bytes(gzip.compress(good)[:4000])
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 this is not parquet PAR1")
    cut = list(RecordReader().read(str(tmp_path / "cut.jsonl.gz")))
    assert len(cut) > 100 and [r.reason for r in cut[-2:]] == ["invalid_json", "unreadable_file"]
    assert "truncated" in cut[-1].detail and cut[-1].position == cut[-2].position + 1
    assert all(isinstance(i, Document) for i in cut[:-2])
    # Cut where a line ends: every record read is whole, and only the decompressor
    # knows more was coming. Concatenated streams (gzip members, zstd frames) are
    # read on into the next one.
    head, tail = good[:good.index(b"\n", 5000) + 1], good[good.index(b"\n", 5000) + 1:]
    for name, compress in (("a.jsonl.gz", gzip.compress), ("b.txt.gz", gzip.compress),
                           ("c.jsonl.zst", zstandard.ZstdCompressor().compress), ("d.jsonl.bz2", bz2.compress)):
        (tmp_path / name).write_bytes(compress(head) + compress(tail)[:30])
        records = list(RecordReader().read(str(tmp_path / name)))
        assert records[-1].reason == "unreadable_file" and "truncated" in records[-1].detail, name
        (tmp_path / name).write_bytes(compress(head) + compress(tail))
        assert all(isinstance(r, Document) for r in RecordReader().read(str(tmp_path / name))), name
    (corrupt,) = RecordReader().read(str(tmp_path / "bad.parquet"))
    assert corrupt.reason == "unreadable_file" and "Parquet" in corrupt.detail


def test_a_record_unaccounted_for_between_stages_fails_the_run():
    import pytest

    from transforms.write import DatasetIncompleteError, check_complete

    read = {"input_bytes": 100, "bytes_read": 100, "records_read": 5}
    check_complete({**read, "documents": 4, "records_rejected": 1, "records_in_error": 1}, 0.5, "e")
    with pytest.raises(DatasetIncompleteError, match="5 records read but 3 documents, 1 rejected records and 0 near"):
        check_complete({**read, "documents": 3, "records_rejected": 1, "records_in_error": 1}, 0.5, "e")
    # Near-duplicates removed on purpose are accounted for, and only as many as were removed.
    check_complete({**read, "documents": 3, "records_rejected": 1, "records_in_error": 1,
                    "near_duplicates_removed": 1}, 0.5, "e")
    with pytest.raises(DatasetIncompleteError, match="2 documents, 1 rejected records and 1 near"):
        check_complete({**read, "documents": 2, "records_rejected": 1, "records_in_error": 1,
                        "near_duplicates_removed": 1}, 0.5, "e")
    # A range or a file that was matched and never read.
    with pytest.raises(DatasetIncompleteError, match="60 of the 100 bytes of the files matched were read"):
        check_complete({**read, "bytes_read": 60, "documents": 4, "records_rejected": 1}, 0.5, "e")


def test_a_shard_missing_or_extra_fails_the_run():
    import pytest

    from transforms.schema import ShardInfo
    from transforms.write import DatasetIncompleteError, check_shards

    planned = {"train": 2, "validation": 1}
    written = [ShardInfo(f"gs://b/out/{name}", 1, "tfrecord") for name in (
        "train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord", "validation-00000-of-00001.tfrecord")]
    check_shards(planned, written)
    for wrong in (written[1:], written + written[:1]):
        with pytest.raises(DatasetIncompleteError, match="not the shards planned"):
            check_shards(planned, wrong)
    # With a second format, each format's shards must all be there.
    parquet = [ShardInfo(s.path.replace(".tfrecord", ".parquet"), 1, "parquet") for s in written]
    check_shards(planned, written + parquet, ("tfrecord", "parquet"))
    with pytest.raises(DatasetIncompleteError, match=r"validation \(parquet\)"):
        check_shards(planned, written + parquet[:2], ("tfrecord", "parquet"))


def test_binary_files_beside_sources_are_skipped_not_errors(tmp_path, code_model_path):
    src = tmp_path / "pkg"
    (src / "__pycache__").mkdir(parents=True)
    for i, doc in enumerate(GOOD[:10]):
        (src / f"m{i}.py").write_text(doc)
        (src / "__pycache__" / f"m{i}.cpython-311.pyc").write_bytes(b"\xa7\r\r\n\0\0\0\0" + doc.encode()[:50])
    out = tmp_path / "out"
    assert main(["run", "--input", str(src), "--output", str(out), "--tokenizer", code_model_path,
                 "--context_length", "128"]) == 0
    errors = json.loads((out / "metadata.json").read_text())["errors"]
    assert errors["by_reason"] == {"binary_file": 10} and errors["records_in_error"] == 0
