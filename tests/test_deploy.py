"""deploy/: the Flex Template metadata, the launcher, the scheduled job's launch request."""

from __future__ import annotations

import argparse
import datetime
import json
import re
from pathlib import Path

from pipeline.memory import SETTINGS
from pipeline.flags import FimflowOptions
from pipeline.plan import expand_output

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def cli_options() -> dict:
    parser = argparse.ArgumentParser()
    FimflowOptions._add_argparse_args(parser)
    return {a.dest: a for a in parser._actions if a.option_strings and a.dest != "help"}


def template_parameters() -> dict:
    return {p["name"]: p for p in json.loads((DEPLOY / "metadata.json").read_text())["parameters"]}


# --wait would keep the Flex Template launcher waiting for the whole job; a launcher submits and returns.
# --quiet silences the progress of local runs, which a Dataflow job shows in its counters instead;
# --memory_check guards local runs only.
CLI_ONLY = {"wait", "quiet", "memory_check"}
# A Beam option the launcher defaults to the template's own image (pipeline.cli.launch_flex_template).
BEAM_PARAMETERS = {"sdk_container_image"}


def test_flex_template_parameters_map_one_to_one_onto_cli_options():
    assert sorted(template_parameters()) == sorted(set(cli_options()) - CLI_ONLY | BEAM_PARAMETERS)


def test_flex_template_parameter_constraints_match_the_cli():
    options = cli_options()
    for name, parameter in template_parameters().items():
        assert parameter["helpText"] and parameter["label"]
        if name in BEAM_PARAMETERS:
            continue
        action = options[name]
        if action.choices:
            assert parameter["regexes"] == ["^(" + "|".join(map(re.escape, action.choices)) + ")$"]
        for pattern in parameter.get("regexes", []):
            default = action.default
            if default not in (None, False):
                # Templates spell booleans as JSON does.
                value = str(default).lower() if isinstance(default, bool) else str(default)
                assert re.fullmatch(pattern, value), (name, pattern, default)
    assert {n for n, p in template_parameters().items() if not p["isOptional"]} == {"input", "output", "tokenizer"}


def test_template_values_parse_as_the_launcher_passes_them():
    from apache_beam.options.pipeline_options import PipelineOptions

    o = PipelineOptions(["--overwrite=true", "--context_length=4096", "--fim_rate=0.9"]).view_as(FimflowOptions)
    assert o.overwrite is True and o.context_length == 4096 and o.fim_rate == 0.9
    assert PipelineOptions(["--overwrite=false"]).view_as(FimflowOptions).overwrite is False
    assert PipelineOptions(["--overwrite"]).view_as(FimflowOptions).overwrite is True


def test_output_is_templated_by_run_date():
    now = datetime.datetime(2026, 11, 25, 3, 4, 5, tzinfo=datetime.timezone.utc)
    assert expand_output("gs://b/fim/{date}", now) == "gs://b/fim/2026-11-25"
    assert expand_output("gs://b/fim/{datetime}/x", now) == "gs://b/fim/2026-11-25T030405Z/x"


def render_tftpl(text: str, variables: dict) -> str:
    """Terraform's templatefile() for the ${name} and ${jsonencode(name)} forms the template uses."""
    text = re.sub(r"\$\{jsonencode\((\w+)\)\}", lambda m: json.dumps(variables[m.group(1)]), text)
    return re.sub(r"\$\{(\w+)\}", lambda m: str(variables[m.group(1)]), text)


def example_tfvars() -> dict:
    """``terraform/example.tfvars`` (flat ``name = "value"`` lines and one ``parameters`` map)."""
    text = (DEPLOY / "terraform" / "example.tfvars").read_text()
    parameters = re.search(r"parameters = \{\n(.*?)\n\}", text, re.S)
    values = dict(re.findall(r'^(\w+)\s*=\s*"([^"]*)"', text[:parameters.start()], re.M))
    values["parameters"] = dict(re.findall(r'(\w+)\s*=\s*"([^"]*)"', parameters.group(1)))
    return values


def example_launch_body() -> dict:
    """The launch request Terraform renders from example.tfvars, with main.tf's defaults."""
    tfvars = example_tfvars()
    return json.loads(render_tftpl((DEPLOY / "terraform" / "launch_body.json.tftpl").read_text(), {
        "job_name": "fimflow-nightly", "template_spec": f"gs://{tfvars['bucket']}/templates/fimflow.json",
        "parameters": tfvars["parameters"],
        "service_account": f"fimflow-worker@{tfvars['project']}.iam.gserviceaccount.com",
        "temp_location": f"gs://{tfvars['bucket']}/tmp", "machine_type": "n2-standard-4", "max_workers": 100,
        "region": tfvars["region"]}))


def test_scheduled_launch_request_is_a_valid_flex_template_launch():
    body = example_launch_body()
    launch = body["launchParameter"]
    assert launch["containerSpecGcsPath"] == "gs://my-bucket/templates/fimflow.json"
    assert set(launch["parameters"]) <= set(template_parameters())
    assert {"input", "output", "tokenizer"} <= set(launch["parameters"])
    # A dataset per run, also for two runs on one day.
    assert launch["parameters"]["output"].endswith("{datetime}")
    env = launch["environment"]
    assert env["maxWorkers"] == 100 and env["machineType"] == "n2-standard-4"
    assert env["serviceAccountEmail"] == "fimflow-worker@my-project.iam.gserviceaccount.com"
    assert "use_runner_v2" in env["additionalExperiments"]
    main_tf = (DEPLOY / "terraform" / "main.tf").read_text()
    assert "flexTemplates:launch" in main_tf and 'templatefile("${path.module}/launch_body.json.tftpl"' in main_tf


def test_the_gcloud_launch_request_is_the_one_terraform_renders():
    assert json.loads((DEPLOY / "launch_body.example.json").read_text()) == example_launch_body()


def test_terraform_declares_every_variable_it_uses_and_the_example_sets_every_required_one():
    terraform = DEPLOY / "terraform"
    declared = dict(re.findall(r'variable "(\w+)" \{(.*?)\n\}', (terraform / "variables.tf").read_text(), re.S))
    used = set(re.findall(r"var\.(\w+)", (terraform / "main.tf").read_text()))
    assert used == set(declared)
    required = {name for name, body in declared.items() if "default" not in body}
    assert required <= set(example_tfvars()) <= set(declared)


def test_terraform_holds_the_whole_setup():
    main_tf = (DEPLOY / "terraform" / "main.tf").read_text()
    for api in ("dataflow", "compute", "storage", "artifactregistry", "cloudbuild", "cloudscheduler"):
        assert f'"{api}.googleapis.com"' in main_tf
    for resource in ("google_storage_bucket", "google_artifact_registry_repository", "google_service_account",
                     "google_cloud_scheduler_job"):
        assert f'resource "{resource}"' in main_tf
    for role in ("roles/dataflow.worker", "roles/storage.objectAdmin", "roles/artifactregistry.reader",
                 "roles/dataflow.developer", "roles/storage.objectViewer", "roles/iam.serviceAccountUser"):
        assert f'"{role}"' in main_tf


def test_flex_template_entry_point_runs_fimflow_run():
    import subprocess
    import sys

    result = subprocess.run([sys.executable, str(DEPLOY / "launch.py"), "--context_length=2"],
                            capture_output=True, text=True, cwd=DEPLOY.parent)
    assert result.returncode == 2 and "--context_length=2 is too small" in result.stderr


def docker_context_keeps(path: str) -> bool:
    """Whether ``.dockerignore`` keeps ``path`` in the build context: its last matching line decides
    (``!`` keeps), a pattern matching a folder matching everything under it, as Docker does."""
    import fnmatch

    keep = True
    for line in (DEPLOY.parent / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate, pattern = line.startswith("!"), line.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        regex = fnmatch.translate(pattern).replace(".*", "[^/]*").replace("[^/]*[^/]*/", "(.*/)?")
        if any(re.fullmatch(regex, p) for p in prefixes):
            keep = negate
    return keep


def test_the_docker_build_context_holds_what_the_image_copies_and_no_virtualenv():
    copied = re.findall(r"^COPY (?!--from)(.+) \S+$", (DEPLOY / "Dockerfile").read_text(), re.M)
    sources = [s for line in copied for s in line.split()]
    assert sources and all(docker_context_keeps(s) for s in sources), sources
    assert all(docker_context_keeps(str(p.relative_to(DEPLOY.parent)))
               for package in ("pipeline", "transforms") for p in (DEPLOY.parent / package).rglob("*.py"))
    for left_out in (".venv/lib/python3.11/site-packages/tensorflow/__init__.py", ".git/HEAD", "tests/conftest.py",
                     "fimflow_out/metadata.json", "pipeline/__pycache__/cli.cpython-311.pyc"):
        assert not docker_context_keeps(left_out), left_out


def test_the_image_records_its_own_name_for_the_workers_and_pins_its_bases():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "ENV FIMFLOW_WORKER_IMAGE=${WORKER_IMAGE}" in dockerfile
    assert "WORKER_IMAGE=${_IMAGE}" in (DEPLOY / "cloudbuild.yaml").read_text()
    # The workers' processes get the malloc settings of local runs.
    assert {name: str(value) for name, value in SETTINGS.items()} == dict(
        re.findall(r"(MALLOC_\w+)=(\S+)", re.search(r"^ENV MALLOC_.*$", dockerfile, re.M).group()))
    tags = dict(re.findall(r"^ARG (\w+)=(\S+)$", dockerfile, re.M))
    assert tags["BEAM_VERSION"] == "2.77.0" and "apache-beam[gcp]==2.77.0" in (DEPLOY / "requirements.txt").read_text()
    assert re.fullmatch(r"\d{8}_RC\d\d", tags["LAUNCHER_TAG"])
