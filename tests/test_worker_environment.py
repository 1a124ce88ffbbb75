"""The pipeline run the way a Dataflow worker runs it: by an SDK harness in an environment of its own.

Dataflow workers run Beam's SDK harness in the image ``deploy/Dockerfile``
builds: Beam's SDK image (``apache-beam[gcp]`` at the pinned version), plus
``deploy/requirements.txt``, plus the fimflow wheel installed without its
dependencies. This test builds that environment as a fresh virtualenv, and
runs a whole pipeline whose every DoFn executes in a harness started from it
(Beam's subprocess SDK environment), over the Cloud Storage emulator, from a
folder where this checkout is not importable. A module, a model asset or a
pin that the image lacks fails here, as it would on the first worker.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from tests.checkout import ROOT, copy_checkout
from tests.gcs_emulator import upload
from transforms.sinks import OUTPUT_FORMATS

pytestmark = pytest.mark.slow


def worker_environment(folder: Path) -> Path:
    """A virtualenv holding what the worker image holds; returns its Python."""
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    python = folder / "bin" / "python"
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "-r", str(ROOT / "deploy" / "requirements.txt")], check=True, capture_output=True,
                   timeout=900)
    # As the Dockerfile does: the wheel of a clean copy, without resolving dependencies again.
    source = folder.parent / "source"
    copy_checkout(source, leave_out=("tests", "bench"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(folder.parent), str(source)], check=True, capture_output=True)
    (wheel,) = folder.parent.glob("fimflow-*.whl")
    subprocess.run([*pip, "--no-deps", str(wheel)], check=True, capture_output=True)
    check = subprocess.run([str(python), "-m", "pip", "check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    return python


def upload_corpus(gcs, prefix: str) -> None:
    """Every input format, so every reader's dependency runs on the workers."""
    docs = [f"def f{i}(x):\n    return x * {i}\n" for i in range(40)]
    lines = "".join(json.dumps({"content": d}) + "\n" for d in docs[:10]).encode()
    upload(lines + b"not json\n", gcs.url(f"{prefix}/a.jsonl"))
    upload(zstandard.ZstdCompressor().compress(
        "".join(json.dumps({"content": d}) + "\n" for d in docs[10:20]).encode()), gcs.url(f"{prefix}/b.jsonl.zst"))
    upload(gzip.compress("".join(json.dumps({"content": d}) + "\n" for d in docs[20:30]).encode()),
           gcs.url(f"{prefix}/c.jsonl.gz"))
    table = Path(os.environ.get("TMPDIR", "/tmp")) / f"fimflow-{os.getpid()}.parquet"
    pq.write_table(pa.table({"content": docs[30:39]}), table)
    upload(table.read_bytes(), gcs.url(f"{prefix}/d.parquet"))
    table.unlink()
    upload(docs[39].encode(), gcs.url(f"{prefix}/e.py"))


def run_pipeline(argv: list[str], runner) -> None:
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipeline.build import FimflowPipeline
    from pipeline.plan import plan_run

    options = PipelineOptions(argv)
    plan = plan_run(options)
    p = beam.Pipeline(runner=runner, options=options)
    _ = p | FimflowPipeline(plan)
    p.run().wait_until_finish()


def test_the_pipeline_runs_on_workers_that_have_only_what_the_image_installs(gcs, tmp_path, monkeypatch,
                                                                            family_tokenizer_paths):
    import apache_beam as beam
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.transforms import environments

    from transforms.beam_workarounds import local_runner

    python = worker_environment(tmp_path / "worker")
    upload_corpus(gcs, "workers/in")
    # The harness must not import this checkout: not from the working folder, not from PYTHONPATH.
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PYTHONPATH", raising=False)
    harness = environments.SubprocessSDKEnvironment.from_command_string(
        f"{python} -m apache_beam.runners.worker.sdk_worker_main")
    # No --tokenizer: the bundled model, which the workers find in their own installed package.
    # Every output format: each sink's library must be in the image, and write to gs:// from there.
    formats = [flag for name in OUTPUT_FORMATS for flag in ("--output_format", name)]
    common = ["--input", gcs.url("workers/in/*"), "--context_length", "128", "--max_error_fraction", "0.1",
              "--read_split_bytes", str(1 << 20), *formats]
    run_pipeline([*common, "--output", gcs.url("workers/out")], fn_runner.FnApiRunner(default_environment=harness))
    run_pipeline([*common, "--output", gcs.url("workers/reference")], local_runner(PipelineOptions([])))
    # A Hugging Face tokenizer.json read from gs:// by the workers, with its family's preset.
    upload(family_tokenizer_paths["starcoder"].read_bytes(), gcs.url("workers/tokenizer.json"))
    huggingface = [*common, "--tokenizer", gcs.url("workers/tokenizer.json"), "--fim_format", "starcoder"]
    run_pipeline([*huggingface, "--output", gcs.url("workers/hf")], fn_runner.FnApiRunner(default_environment=harness))
    run_pipeline([*huggingface, "--output", gcs.url("workers/hf_reference")], local_runner(PipelineOptions([])))

    def files(output):
        matched = FileSystems.match([gcs.url(f"{output}/**")])[0].metadata_list
        return {m.path[len(gcs.url(output)):]: FileSystems.open(m.path).read() for m in matched
                if not m.path.endswith("metadata.json")}

    metadata = json.loads(FileSystems.open(gcs.url("workers/out/metadata.json")).read())
    assert metadata["counts"]["documents"] == 40 and metadata["errors"]["by_reason"] == {"invalid_json": 1}
    assert {entry["format"] for entry in metadata["files"]} == set(OUTPUT_FORMATS)
    # The same bytes as the test's own environment gives.
    assert files("workers/out") == files("workers/reference")
    assert files("workers/hf") == files("workers/hf_reference") != files("workers/out")
    # And the DoFns did run in the worker environment.
    probe = tmp_path / "probe.txt"
    with beam.Pipeline(runner=fn_runner.FnApiRunner(default_environment=harness)) as p:
        _ = (p | beam.Create([str(probe)])
             | beam.Map(lambda path: Path(path).write_text(__import__("sys").prefix)))
    assert probe.read_text() == str(tmp_path / "worker")
