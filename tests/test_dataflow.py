"""The real Dataflow job request, built offline against the Cloud Storage emulator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.gcs_emulator import upload

ROOT = Path(__file__).resolve().parent.parent
STAGES = ["Match", "Read", "Tokenize", "Shuffle", "Shards", "WriteRejected", "MergeStats",
          "WriteMetadata"]


def launcher_environment(gcs, tmp_path, **extra) -> dict:
    """A launcher's environment: no credentials, no gcloud configuration, the emulator, and the tests'
    start-up configuration (without it every match waits out Beam's credential look-up retries)."""
    return {"STORAGE_EMULATOR_HOST": gcs.host, "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin",
            "HOME": str(tmp_path), "PYTHONPATH": os.environ["PYTHONPATH"], **extra}


def build_template(gcs, tmp_path, code_model_path, *extra) -> dict:
    upload(b'{"content": "def f():\\n    return 1\\n"}\n', gcs.url("df/in/a.jsonl"))
    upload(Path(code_model_path).read_bytes(), gcs.url("df/code.model"))
    template = tmp_path / "template.json"
    env = launcher_environment(gcs, tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "run", "--runner", "DataflowRunner", "--project", "fimflow-test",
         "--region", "europe-west4", "--temp_location", gcs.url("df/tmp"),
         "--staging_location", gcs.url("df/staging"), "--template_location", str(template),
         "--input", gcs.url("df/in/*.jsonl"), "--tokenizer", gcs.url("df/code.model"),
         "--output", gcs.url("df/out"), "--context_length", "512", *extra],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(template.read_text())


def staged_transform_names(gcs, staging: str = "df/staging") -> list[str]:
    """Names of the transforms in the pipeline proto the job staged (Runner v2 keeps them there)."""
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.portability.api import beam_runner_api_pb2

    (proto,) = [m.path for m in FileSystems.match([gcs.url(f"{staging}/**")])[0].metadata_list
                if m.path.endswith("/pipeline.pb")][-1:]
    with FileSystems.open(proto) as f:
        pipeline = beam_runner_api_pb2.Pipeline.FromString(f.read())
    return [t.unique_name for t in pipeline.components.transforms.values()]


def test_dataflow_job_stages_the_package_and_has_every_stage(gcs, tmp_path, code_model_path):
    job = build_template(gcs, tmp_path, code_model_path, "--setup_file", str(ROOT / "setup.py"))
    packages = json.dumps(job["environment"]["workerPools"][0].get("packages", []))
    assert "workflow.tar.gz" in packages
    names = staged_transform_names(gcs)
    # One composite, its stages named under it.
    for stage in STAGES:
        assert f"Fimflow/{stage}" in names, stage
    options = json.dumps(job["environment"]["sdkPipelineOptions"])
    assert '"context_length": 512' in options
    assert '"save_main_session": false' in options and "pickled_main_session" not in packages


def test_dataflow_job_names_a_custom_container(gcs, tmp_path, code_model_path):
    image = "europe-docker.pkg.dev/fimflow-test/fimflow/worker:0.1.0"
    job = build_template(gcs, tmp_path, code_model_path, "--sdk_container_image", image,
                         "--experiments", "use_runner_v2")
    assert image in json.dumps(job["environment"]["workerPools"])


def test_the_launcher_submits_the_job_and_returns_leaving_the_lock_to_the_job(gcs, tmp_path, code_model_path):
    from tests.dataflow_api import DataflowApiStandIn
    from transforms.output_lock import read_lock

    upload(b'{"content": "def f():\\n    return 1\\n"}\n', gcs.url("submit/in/a.jsonl"))
    upload(Path(code_model_path).read_bytes(), gcs.url("submit/code.model"))
    image = "europe-docker.pkg.dev/fimflow-test/fimflow/fimflow:0.1.0"
    api = DataflowApiStandIn()
    try:
        env = launcher_environment(gcs, tmp_path)
        result = subprocess.run(
            [sys.executable, "-m", "pipeline", "run", "--runner", "DataflowRunner", "--project", "fimflow-test",
             "--region", "europe-west4", "--temp_location", gcs.url("submit/tmp"),
             "--dataflow_endpoint", api.endpoint, "--no_auth", "--sdk_container_image", image,
             "--input", gcs.url("submit/in/*.jsonl"), "--tokenizer", gcs.url("submit/code.model"),
             "--output", gcs.url("submit/out")],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    finally:
        api.stop()
    assert result.returncode == 0, result.stderr[-3000:]
    ((job_id, job),) = api.jobs.items()
    # Returned at once with what an operator needs, while the job is still pending.
    assert f"job            {job_id}" in result.stdout
    assert (f"https://console.cloud.google.com/dataflow/jobs/europe-west4/{job_id}?project=fimflow-test"
            in result.stdout)
    assert gcs.url("submit/out") in result.stdout
    assert image in json.dumps(job["environment"]["workerPools"])
    # The job holds the output; its last step releases the lock.
    assert read_lock(gcs.url("submit/out"))["run_id"]
    names = staged_transform_names(gcs, "submit/tmp")
    assert "Fimflow/WriteMetadata/ReleaseLock" in names


def test_a_flex_template_launch_gives_the_job_the_image_it_was_built_as(gcs, tmp_path, code_model_path):
    """deploy/launch.py as the Flex Template launcher runs it: template parameters and the launcher's
    own options as --name=value, the job written to --template_location for Dataflow to create."""
    from transforms.output_lock import read_lock

    upload(b'{"content": "def f():\\n    return 1\\n"}\n', gcs.url("flex/in/a.jsonl"))
    upload(Path(code_model_path).read_bytes(), gcs.url("flex/code.model"))
    image = "europe-west4-docker.pkg.dev/fimflow-test/fimflow/fimflow:0.1.0"
    env = launcher_environment(gcs, tmp_path, FIMFLOW_WORKER_IMAGE=image)

    def launch(output: str):
        return subprocess.run(
            [sys.executable, str(ROOT / "deploy" / "launch.py"), "--runner=DataflowRunner",
             "--project=fimflow-test", "--region=europe-west4", f"--temp_location={gcs.url('flex/tmp')}",
             f"--staging_location={gcs.url('flex/staging')}", f"--template_location={tmp_path / 'job.json'}",
             f"--input={gcs.url('flex/in/*.jsonl')}", f"--tokenizer={gcs.url('flex/code.model')}",
             f"--output={output}", "--context_length=512"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)

    result = launch(gcs.url("flex/out/{date}"))
    assert result.returncode == 0, result.stderr[-3000:]
    job = json.loads((tmp_path / "job.json").read_text())
    assert image in json.dumps(job["environment"]["workerPools"])
    (output,) = [line.split()[1] for line in result.stdout.splitlines() if line.startswith("output")]
    assert output.startswith(gcs.url("flex/out/20"))
    # The job about to run holds the output until its last step; a second launch onto it is refused.
    assert read_lock(output)["run_id"]
    second = launch(output)
    assert second.returncode == 2 and "is being written by another run" in second.stderr
    assert "Dataflow job failed or was cancelled" in second.stderr
