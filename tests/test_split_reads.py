"""Large line-oriented files are read in byte ranges by many workers, with the same records and bytes."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.cli import main
from tests.corpora import stdlib_sources
from transforms.read import RecordReader, split_ranges
from transforms.schema import InputFile

# Lines as bytes: JSON records, blank lines, bad records, and bytes that are not UTF-8.
LINE = st.one_of(
    st.text(min_size=1, max_size=40).map(lambda t: json.dumps({"content": t}, ensure_ascii=False).encode()),
    st.sampled_from([b"", b"   ", b"\r", b"not json", b'{"content": 5}', b"[1]", b'{"content": "\\ud800"}']),
    st.binary(max_size=12).map(lambda b: b.replace(b"\n", b"")),
)


@settings(max_examples=200, deadline=None)
@given(lines=st.lists(LINE, max_size=30), bom=st.booleans(), final_newline=st.booleans(),
       split_bytes=st.integers(1, 64))
def test_byte_ranges_read_each_record_once_as_the_whole_file_does(tmp_path_factory, lines, bom, final_newline,
                                                                  split_bytes):
    data = (b"\xef\xbb\xbf" if bom else b"") + b"\n".join(lines)
    if final_newline and lines:
        data += b"\n"
    path = tmp_path_factory.mktemp("split") / "a.jsonl"
    path.write_bytes(data)
    file = InputFile(str(path), len(data))
    reader = RecordReader()
    whole = list(reader.read(file.path, file.size))
    ranges = split_ranges(file, split_bytes)
    assert len(ranges) == (-(-len(data) // split_bytes) if len(data) > split_bytes else 1)
    parts = [record for r in ranges for record in reader.read(file.path, file.size, r.start, r.end)]
    assert parts == whole


def test_a_large_jsonl_file_read_in_ranges_gives_the_bytes_of_an_unsplit_read(tmp_path, code_model_path):
    sources = stdlib_sources(3_500_000, seed=11)
    lines = [json.dumps({"content": s, "id": f"d{i}"}) for i, s in enumerate(sources)]
    # Broken records among them, so dead letters are compared too.
    for i in range(3, len(lines), 97):
        lines[i] = lines[i][:-7]
    (tmp_path / "in").mkdir()
    big = tmp_path / "in" / "big.jsonl"
    big.write_text("\n".join(lines) + "\n")
    assert big.stat().st_size > 3 << 20
    outputs = {}
    for name, split in (("whole", 64 << 20), ("split", 1 << 20)):
        out = tmp_path / name
        assert main(["run", "--input", str(big), "--output", str(out), "--tokenizer", code_model_path,
                     "--context_length", "256", "--read_split_bytes", str(split), "--num_shards", "3",
                     "--id_field", "id", "--max_error_fraction", "0.1"]) == 0
        outputs[name] = {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
                         if p.is_file() and p.name != "metadata.json"}
        outputs[name + "_metadata"] = json.loads((out / "metadata.json").read_text())
    whole, split = outputs["whole_metadata"], outputs["split_metadata"]
    ranges = -(-big.stat().st_size // (1 << 20))
    assert (whole["counts"].pop("file_ranges_read"), split["counts"].pop("file_ranges_read")) == (1, ranges)
    assert whole["counts"] == split["counts"] and whole["errors"] == split["errors"]
    assert split["counts"]["bytes_read"] == split["counts"]["input_bytes"] == big.stat().st_size
    assert whole["errors"]["by_reason"] == {"invalid_json": len(range(3, len(lines), 97))}
    assert outputs["whole"] == outputs["split"]
    assert sorted(outputs["split"]) == [f"errors/rejected-0000{i}-of-00003.jsonl" for i in range(3)] + [
        f"train-0000{i}-of-00003.tfrecord" for i in range(3)]
    # Dead letters name records by byte position: the line starts there.
    data = big.read_bytes()
    for line in outputs["split"]["errors/rejected-00000-of-00003.jsonl"].splitlines():
        record = json.loads(line)
        assert data[record["position"] - 1:record["position"]] == b"\n"
        assert data[record["position"]:].startswith(record["raw_start"][:50].encode())
