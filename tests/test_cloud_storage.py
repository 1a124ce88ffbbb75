"""gs:// inputs, tokenizer and output against a local Cloud Storage emulator."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from apache_beam.io.filesystems import FileSystems

from pipeline.cli import main
from pipeline.inspect_dataset import read_examples
from tests.gcs_emulator import upload


def download_dataset(url: str, local: Path) -> Path:
    local.mkdir(parents=True)
    for result in FileSystems.match([url + "/**"]):
        for m in result.metadata_list:
            target = local / m.path[len(url) + 1:]
            target.parent.mkdir(parents=True, exist_ok=True)
            with FileSystems.open(m.path) as f:
                target.write_bytes(f.read())
    return local


def test_gs_inputs_tokenizer_and_output_match_a_local_run(gcs, tmp_path, jsonl_corpus, code_model_path):
    corpus, docs = jsonl_corpus
    start = time.monotonic()
    for part in sorted(corpus.glob("*.jsonl")):
        upload(part.read_bytes(), gcs.url(f"corpus/{part.name}"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"content": 1}\n')
    upload(bad.read_bytes(), gcs.url("corpus/bad.jsonl"))
    upload(Path(code_model_path).read_bytes(), gcs.url("models/code.model"))
    common = ["--context_length", "256", "--seed", "5", "--num_shards", "2", "--max_error_fraction", "0.5"]
    assert main(["run", "--input", gcs.url("corpus/*.jsonl"), "--tokenizer", gcs.url("models/code.model"),
                 "--output", gcs.url("out"), *common]) == 0
    # No credential look-up with backoff: the whole gs:// run takes seconds, not minutes.
    assert time.monotonic() - start < 60
    local = download_dataset(gcs.url("out"), tmp_path / "from_gcs")
    metadata = json.loads((local / "metadata.json").read_text())
    assert metadata["tokenizer"]["path"] == gcs.url("models/code.model")
    assert metadata["counts"]["documents"] == len(docs)
    assert metadata["errors"]["by_reason"] == {"text_not_string": 1}
    rejected = [json.loads(line) for path in sorted((local / "errors").glob("rejected-*.jsonl"))
                for line in path.open()]
    assert [(r["source"], r["reason"]) for r in rejected] == [(gcs.url("corpus/bad.jsonl"), "text_not_string")]
    assert len(read_examples(str(local))) == metadata["counts"]["examples"]
    # Read in place too: through Beam's filesystems, so the emulator is honoured.
    assert len(read_examples(gcs.url("out"))) == metadata["counts"]["examples"]
    assert main(["inspect", gcs.url("out"), "--n", "2", "--color", "never"]) == 0
    # The report reads and writes there too.
    assert main(["report", gcs.url("out")]) == 0
    page = download_dataset(gcs.url("out"), tmp_path / "with_report") / "report.html"
    assert page.read_text().count("data:image/png;base64,") >= 6

    for part in sorted(corpus.glob("*.jsonl")):
        (tmp_path / "local_corpus").mkdir(exist_ok=True)
        (tmp_path / "local_corpus" / part.name).write_bytes(part.read_bytes())
    assert main(["run", "--input", str(tmp_path / "local_corpus"), "--tokenizer", code_model_path,
                 "--output", str(tmp_path / "local_out"), *common]) == 0
    for shard in ("train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord"):
        assert (local / shard).read_bytes() == (tmp_path / "local_out" / shard).read_bytes()


def test_gs_output_that_holds_a_dataset_is_refused(gcs, tmp_path, capsys, code_model_path):
    with FileSystems.create(gcs.url("done/metadata.json")) as f:
        f.write(b"{}")
    doc = tmp_path / "a.jsonl"
    doc.write_text('{"content": "x = 1"}\n')
    assert main(["run", "--input", str(doc), "--tokenizer", code_model_path, "--output", gcs.url("done")]) == 2
    assert "already holds a complete dataset" in capsys.readouterr().err


STOP_MID_READ = """
import json, os, sys
from tests.gcs_emulator import GcsEmulator, upload
emulator = GcsEmulator("b")
os.environ["STORAGE_EMULATOR_HOST"] = emulator.host
from tests import emulator_auth
emulator_auth.install()
from transforms.read import RecordReader, StorageError
upload("".join(json.dumps({"content": "x = %d\\n" % i + "y" * 2000}) + "\\n" for i in range(20000)).encode(),
       "gs://b/big.jsonl")
read = 0
try:
    for record in RecordReader().read("gs://b/big.jsonl"):
        read += 1
        if read == 100:
            emulator.stop()
except StorageError as e:
    print("STORAGE_ERROR", read, e)
else:
    print("COMPLETED", read)
"""


@pytest.mark.slow
def test_storage_stopped_mid_read_fails_the_read_instead_of_ending_the_file():
    """The real thing: Cloud Storage (the emulator) gone while a file is read. The client retries for
    up to 120 s, so this takes about two minutes; in its own process, with its own emulator."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", STOP_MID_READ], capture_output=True, text=True, timeout=400,
                            cwd=Path(__file__).resolve().parent.parent)
    lines = [line for line in result.stdout.splitlines() if line.startswith(("STORAGE_ERROR", "COMPLETED"))]
    assert lines and lines[0].startswith("STORAGE_ERROR"), result.stdout[-2000:] + result.stderr[-2000:]
    assert "reading gs://b/big.jsonl failed after" in lines[0]
    assert int(lines[0].split()[1]) < 20000
